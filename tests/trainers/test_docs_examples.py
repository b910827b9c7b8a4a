"""The docs' examples that use the authors' published networks run as written (with REFERENCE
pointed at them) and print the values the docs quote; skipped when the networks are absent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference_networks import REFERENCE, needs_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLONE = 'Path("rnn_timescale_public/trained_models")'


def _block_using_reference(page: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S) if CLONE in b]
    assert len(blocks) == 1, f"{page}: expected one example that reads the authors' networks"
    return blocks[0]


def _run(block: str, tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(block.replace(CLONE, f"Path({str(REFERENCE)!r})"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _numbers(text: str) -> np.ndarray:
    return np.array([float(x) for x in re.findall(r"\d+\.\d*|\d+", text)])


def test_no_page_sends_users_to_the_projects_shared_folder():
    """Users have no ../shared: the examples point at the authors' repository instead."""
    for page in DOCS.glob("*.md"):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            assert "shared/reference" not in block, page.name


@pytest.mark.slow
@needs_reference
def test_robustness_example_prints_the_quoted_values(tmp_path):
    block = _block_using_reference("robustness.md")
    out = _run(block, tmp_path).splitlines()
    quoted = [line.split("#", 1)[1] for line in block.splitlines() if line.startswith("print(")]
    curve_quoted, abl_quoted = _numbers(quoted[0].split(":")[0]), _numbers(quoted[1].split(":")[0])
    np.testing.assert_allclose(_numbers(out[0]), curve_quoted, atol=0.006)
    np.testing.assert_allclose(_numbers(out[1]), abl_quoted[:1], atol=0.006)


@pytest.mark.slow
@needs_reference
def test_training_example_scores_every_head_as_quoted(tmp_path):
    out = _run(_block_using_reference("training.md"), tmp_path)
    acc = _numbers(out)
    assert acc.size == 10 and np.all(acc >= 99.0), out

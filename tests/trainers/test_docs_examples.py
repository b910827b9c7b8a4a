"""The docs' examples that use the authors' published networks run as written (with REFERENCE
pointed at them) and print the values the docs quote; skipped when the networks are absent."""

from __future__ import annotations

import os
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


def console_blocks(page: str) -> list[list[tuple[str, list[str]]]]:
    """The ```console blocks of a docs page: per block, (command, quoted output lines) pairs.
    A command line starts with '$ ' and continues while it ends with a backslash."""
    blocks = []
    for text in re.findall(r"```console\n(.*?)```", (DOCS / page).read_text(), flags=re.S):
        pairs: list[tuple[str, list[str]]] = []
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                cmd = lines[i][2:]
                while cmd.endswith("\\"):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                pairs.append((cmd, []))
            elif pairs:
                pairs[-1][1].append(lines[i])
            i += 1
        blocks.append(pairs)
    return blocks


def _matches(quoted: str, printed: str) -> bool:
    """A quoted line matches the printed one exactly, except that '...' stands for anything."""
    return re.fullmatch(".*".join(re.escape(part) for part in quoted.strip().split("...")), printed.strip()) is not None


def test_console_parser_and_matching():
    assert _matches("after 5 epoch(s); best accuracy ...; last ...", "after 5 epoch(s); best accuracy 41.2%; last 40.0%")
    assert not _matches("after 143 epoch(s)", "after 134 epoch(s)")


@pytest.mark.slow
@pytest.mark.parametrize("page, command", [
    ("report.md", "trainers train --out runs/mh"),        # the walkthrough: two runs and the report
    ("cli.md", "trainers train --out runs/mh --units 64"),
])
def test_quoted_console_output_is_reproduced(tmp_path, page, command):
    """The seeded commands of a docs block print what the docs quote (issue 12.10: quoted epochs
    and accuracies had drifted from what the commands print)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    block = next(b for b in console_blocks(page) if b and b[0][0].startswith(command))
    for cmd, quoted in block:
        proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"
        printed = proc.stdout.strip().splitlines()
        for line in (q for q in quoted if q.strip()):
            assert any(_matches(line, p) for p in printed), f"{page}: `{cmd}` printed\n{proc.stdout}\nnot\n{line}"

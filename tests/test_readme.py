"""The README's shell examples run as written (in a scratch folder), so the first thing a new user
copies works. The set-up commands' ``pip install ... &&`` prefixes are dropped (the package is
installed already) and the test command is not run from inside the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def shell_examples(text: str) -> list[str]:
    """The ```bash blocks of ``text``, without install prefixes and without the test command."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = []
        for line in block.splitlines():
            if "pip install" in line:
                line = line.rsplit("&&", 1)[-1] if "&&" in line else ""
                if "pip install" in line:
                    line = ""
            if "pytest" in line:
                continue
            lines.append(line)
        script = "\n".join(lines).strip()
        if script:
            blocks.append(script)
    return blocks


def test_the_parser_keeps_commands_and_drops_set_up():
    text = ("```bash\npip install torch==2.13.0 && pip install -e . && dynatools demo -o d\n```\n"
            "```bash\npip install -e \".[test]\" && python -m pytest -q\n```\n"
            "```python\nimport dynatools\n```\n```bash\na=1\necho $a \\\n  more\n```\n")
    assert shell_examples(text) == ["dynatools demo -o d", "a=1\necho $a \\\n  more"]


@pytest.mark.slow
def test_readme_shell_examples_run_as_written(tmp_path):
    scripts = shell_examples(README.read_text())
    assert len(scripts) >= 3, "the README lost its shell examples"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for script in scripts:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README example failed:\n{script}\n--- stderr ---\n{proc.stderr[-3000:]}"


def python_examples(text: str) -> list[str]:
    """The ```python blocks of ``text``."""
    return [block.strip() for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


def test_readme_python_example_prints_its_results(tmp_path):
    """Run as a script (not in a notebook), the README's Python block must show what it computes:
    the summary of tau_net and the counts of the selected models and statuses."""
    blocks = python_examples(README.read_text())
    assert blocks, "the README lost its Python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for expected in ("Name: tau_net", "selected_model", "status", "single", "ok"):
        assert expected in proc.stdout, f"{expected!r} missing from the README example's output:\n{proc.stdout}"

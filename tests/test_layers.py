"""The import direction is checked by import-linter's contracts (pyproject.toml): the packages'
layers, and statistics free of torch."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "from importlinter.cli import lint_imports_command; lint_imports_command()",
]


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        LINT_IMPORTS,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": ""},
    )


def test_imports_go_one_way():
    result = lint(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/config.py", "import harness.report", "harness.core.config -> harness.report"),
        ("stats/design.py", "import torch", "harness.stats.design -> torch"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(PROJECT_ROOT / "harness", tmp_path / "harness")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    source = tmp_path / "harness" / module
    source.write_text(source.read_text() + f"\n{line}  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout

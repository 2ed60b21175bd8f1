"""The import direction is checked by import-linter's layers contract (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

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
    assert "1 kept, 0 broken" in result.stdout


def test_a_wrong_way_import_breaks_the_contract(tmp_path):
    shutil.copytree(PROJECT_ROOT / "harness", tmp_path / "harness")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    config = tmp_path / "harness" / "config.py"
    config.write_text(config.read_text() + "\nimport harness.report  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "harness.config -> harness.report" in result.stdout

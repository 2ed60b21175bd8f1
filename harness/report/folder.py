"""A report's output folder, which the report owns only in part: it replaces or removes only the
files that a report wrote there before, as listed in the folder's manifest.json.

A folder is taken when it is new, empty, or holds a manifest; a folder with other files and no
manifest (a project root, a data folder) is refused, and so is one that contains, or lies inside,
the results the report reads (except the report's own data/ copy, which it is regenerated from).
Other files in a taken folder (another report in a subfolder, a user's notes) stay untouched, and
a file of theirs where the report would write is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from harness import UserError
from harness.core.store import file_lock, write_json_atomically

REPORTS_DIR_ENV = "HARNESS_REPORTS_DIR"
DEFAULT_REPORTS_DIR = Path("reports")
MANIFEST = "manifest.json"
LOCK = ".report.lock"  # held while a report is written; removed after
DATA = "data"  # the copy of the records and plan behind the pages


class ReportFolderError(UserError):
    pass


def resolve_reports_dir(arg: str | Path | None = None) -> Path:
    """The reports folder: the option, else $HARNESS_REPORTS_DIR, else ./reports."""
    return Path(arg or os.environ.get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_DIR)


def check_report_folder(out: Path, results_dir: Path) -> None:
    """Fails in one line, before any training, where a report could not be written to out."""
    out, results = Path(out), Path(results_dir)
    if out.exists() and not out.is_dir():
        raise ReportFolderError(f"{out} is a file, not a folder", "reports_dir")
    if _is_within(out, results) or (
        _is_within(results, out) and results.resolve() != (out / DATA).resolve()
    ):
        raise ReportFolderError(
            f"{out} and the results folder {results} lie one inside the other: give a reports "
            "folder apart from the results, so that a report never touches what it reads",
            "reports_dir",
        )
    if out.is_dir() and not os.access(out, os.W_OK):
        raise ReportFolderError(f"{out} is not writable: give another folder", "reports_dir")
    if out.is_dir():
        with file_lock(out / LOCK, wait=True):  # a report being written there ends first
            _check_owned(out)


# What a report writes: these pages at the top, and everything in these folders
PAGES = ("README.md", "ablations.md", "budgets.md", "claims.md", "factorial.md",
         "factorial_effects.csv", "per_digit.md", "runs.csv", "search.md")  # fmt: skip
FOLDERS = (DATA, "plots", "variants")


def _check_owned(out: Path) -> None:
    """A folder of another's files is refused; so is a file of another's at a path a report
    writes, before anything trains rather than when the report is written."""
    if not (out / MANIFEST).is_file() and any(p.name != LOCK for p in out.iterdir()):
        raise ReportFolderError(
            f"{out} holds files that no report wrote (it has no {MANIFEST}; reports of "
            "harness versions before it have none either): give a new or empty folder",
            "reports_dir",
        )
    listed = _read_manifest(out)
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        ours = relative in PAGES or relative.split("/")[0] in FOLDERS
        if ours and not path.is_dir() and relative not in listed:
            raise ReportFolderError(
                f"{path} was not written by a report, where a report writes: move it away, or "
                "give another folder",
                "reports_dir",
            )


def _is_within(inner: Path, outer: Path) -> bool:
    return inner.resolve().is_relative_to(outer.resolve())


class ReportFolder(contextlib.AbstractContextManager):
    """Hands out the paths a report writes, refusing any that holds a file a report did not
    write; `finish` removes the files of the last report that this one did not write again
    (arms dropped from the plan leave no page behind) and saves the new manifest. The folder
    is locked meanwhile: two commands that end together write their reports one after the
    other."""

    def __init__(self, out: Path, results_dir: Path) -> None:
        check_report_folder(out, results_dir)
        self.root = Path(out)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(file_lock(self.root / LOCK, wait=True))
        try:
            _check_owned(self.root)
            self.previous = _read_manifest(self.root)
        except BaseException:
            self._lock.close()
            raise
        self.written: set[str] = set()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.close()

    def path(self, relative: str) -> Path:
        """Where to write a file of the report; a new one is listed in the manifest first, so
        that a report stopped halfway (Ctrl-C) leaves only files that the next one owns."""
        target = self.root / relative
        if relative not in self.previous | self.written:
            if target.exists() or target.is_symlink():
                raise ReportFolderError(
                    f"{target} was not written by a report: move it away, or give another folder",
                    "reports_dir",
                )
            self._save_manifest(self.previous | self.written | {relative})
        return self.adopt(relative)

    def adopt(self, relative: str) -> Path:
        """A file already there that is the report's own (its data/ copy, when the report is
        regenerated from that copy): listed as written, whoever wrote it."""
        self.written.add(relative)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def finish(self) -> None:
        for stale in sorted(self.previous - self.written):
            (self.root / stale).unlink(missing_ok=True)
        self._save_manifest(self.written)

    def _save_manifest(self, files: set[str]) -> None:
        manifest = {"written_by": "python -m harness.report", "files": sorted(files)}
        write_json_atomically(self.root / MANIFEST, manifest)


def _read_manifest(root: Path) -> set[str]:
    path = root / MANIFEST
    if not path.is_file():
        return set()
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        inside = [
            isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts
            for f in files
        ]
        if not all(inside):
            raise ValueError("a listed file is no relative path inside the folder")
    except (ValueError, KeyError, TypeError) as error:
        raise ReportFolderError(
            f"{path}: not a readable manifest ({error}); move it away, or give a new or empty "
            "folder",
            "reports_dir",
        ) from None
    return set(files)

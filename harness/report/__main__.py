"""`python -m harness.report`: see harness/cli/report.py."""

from harness.command import run

run("harness.cli.report")

"""`python -m harness.report`: see harness/cli/report.py."""

from harness import cli
from harness.cli.report import main

raise SystemExit(cli.guard(main))

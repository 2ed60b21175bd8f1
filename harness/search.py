"""`python -m harness.search`: see harness/cli/search.py."""

from harness import cli
from harness.cli.search import main

if __name__ == "__main__":
    raise SystemExit(cli.guard(main))

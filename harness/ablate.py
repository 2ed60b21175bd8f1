"""`python -m harness.ablate`: see harness/cli/ablate.py."""

from harness import cli
from harness.cli.ablate import main

if __name__ == "__main__":
    raise SystemExit(cli.guard(main))

"""`python run_all.py`: the whole study end to end (see harness/cli/run_all.py, or --help)."""

from harness import cli
from harness.cli.run_all import main

if __name__ == "__main__":
    raise SystemExit(cli.guard(main))

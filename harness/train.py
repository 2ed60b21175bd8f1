"""`python -m harness.train`: see harness/cli/train.py."""

from harness import cli
from harness.cli.train import main

if __name__ == "__main__":
    raise SystemExit(cli.guard(main))

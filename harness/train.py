"""`python -m harness.train`: see harness/cli/train.py."""

from harness.command import run

if __name__ == "__main__":
    run("harness.cli.train")

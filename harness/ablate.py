"""`python -m harness.ablate`: see harness/cli/ablate.py."""

from harness.command import run

if __name__ == "__main__":
    run("harness.cli.ablate")

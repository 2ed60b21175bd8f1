"""`python -m harness.search`: see harness/cli/search.py."""

from harness.command import run

if __name__ == "__main__":
    run("harness.cli.search")

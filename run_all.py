"""`python run_all.py`: the whole study end to end (see harness/cli/run_all.py, or --help)."""

from harness.command import run

if __name__ == "__main__":
    run("harness.cli.run_all")

"""Trains the reference for the default seeds (the ablations, search and reports come next)."""

from harness.train import main

if __name__ == "__main__":
    for seed in range(5):
        main(["--seed", str(seed)])

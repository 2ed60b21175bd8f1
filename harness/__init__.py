"""Benchmark and ablation harness for the classic MNIST feedforward network."""


class UserError(Exception):
    """Bad input (config, spec, data folder, name): the CLI prints it as one line and exits 2."""

"""Benchmark and ablation harness for the classic MNIST feedforward network."""


class UserError(Exception):
    """Bad input (config, spec, data folder, name): the CLI prints it as one line and exits 2.

    setting: the settings field the input came through (StudySettings.seeds, Resources.device,
    ...), if one did; the command line names its option (--seeds, --device) before the message.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

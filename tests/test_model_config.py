import pytest
import torch
from torch import nn

from harness.core.config import Config, ConfigError, load_config, parse_assignment, with_overrides
from harness.core.model import build_model, parameter_count


def test_reference_parameter_count_and_output_shape():
    model = build_model(Config())
    assert parameter_count(model) == 569_226
    assert model(torch.randn(4, 784)).shape == (4, 10)


def test_write_up_count_is_reference_minus_last_batchnorm_affine():
    assert parameter_count(build_model(Config())) - 2 * 128 == 568_970


def test_toggles_remove_layers():
    model = build_model(Config(batchnorm=False, dropout=(0.0, 0.0, 0.0)))
    kinds = {type(layer) for layer in model}
    assert nn.BatchNorm1d not in kinds and nn.Dropout not in kinds
    assert sum(isinstance(layer, nn.Linear) for layer in model) == 4


def test_toml_overrides_and_hash(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("hidden_widths = [256, 128, 64]\nlr = 2e-3\nweight_decay = 0\n")
    config = load_config(path)
    assert config.hidden_widths == (256, 128, 64) and config.lr == 2e-3
    assert config.weight_decay == 0.0 and isinstance(config.weight_decay, float)
    assert config.hash() != Config().hash()
    assert load_config(path).hash() == config.hash()  # stable across loads


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("learning_rate = 0.1", "unknown key 'learning_rate'"),
        ("batchnorm = 1", "batchnorm: expected bool"),
        ("hidden_widths = 512", "hidden_widths: expected a list of int"),
        ("dropout = [0.1]", "dropout: 1 rates for 3 hidden layers"),
        ("lr = = 1", "TOML syntax error"),
        ("shift = 9", "shift: must be between 0 and 4 pixels"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and fragment in str(error.value)


def test_command_line_assignments():
    assert parse_assignment("hidden_widths=[8, 4]") == {"hidden_widths": [8, 4]}
    config = load_config(None, ["epochs=3", "scheduler='none'"])
    assert config.epochs == 3 and config.scheduler == "none"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="epochs: expected int"):
        with_overrides(Config(), {"epochs": 1.5})


def test_train_cli_rejects_bad_override_in_one_line(tmp_path, one_line_error):
    line = one_line_error(
        "-m", "harness.train", "--set", "learning_rate=0.1", "--results-dir", str(tmp_path)
    )
    assert line == (
        "error: --set: learning_rate=0.1: unknown key 'learning_rate' (known: "
        + ", ".join(Config().to_dict())
        + ")"
    )
    assert not any(tmp_path.iterdir())


def test_assignments_apply_together_so_widths_and_dropout_change_as_one():
    config = load_config(None, ["hidden_widths=[64, 32]", "dropout=[0.1, 0.0]"])
    assert config.hidden_widths == (64, 32) and config.dropout == (0.1, 0.0)
    with pytest.raises(ConfigError, match="dropout: 3 rates for 2 hidden layers"):
        load_config(None, ["hidden_widths=[64, 32]"])

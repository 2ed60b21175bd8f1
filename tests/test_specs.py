import subprocess
import sys

import pytest

from harness import UserError
from harness.core.config import Config
from harness.study.specs import SpecError, load_spec, spec_names

SHIPPED = [
    "no_batchnorm",
    "no_dropout",
    "no_regularization",
    "no_scheduler",
    "no_weight_decay",
    "reference",
    "width_double",
    "width_half",
]


def test_every_shipped_spec_is_found_and_parses():
    assert set(SHIPPED) <= set(spec_names())
    for name in spec_names():
        spec = load_spec(name)
        assert spec.description and spec.seeds == 5


def test_overrides_are_relative_to_the_reference():
    assert load_spec("reference").config == Config()
    config = load_spec("no_regularization").config
    assert (config.batchnorm, config.dropout, config.weight_decay) == (False, (0, 0, 0), 0)
    assert config.lr == Config().lr and config.hidden_widths == Config().hidden_widths
    assert load_spec("width_double").config.hidden_widths == (1024, 512, 256)
    assert load_spec("no_scheduler").config.scheduler == "none"


def test_a_new_spec_is_just_a_file(tmp_path):
    (tmp_path / "lr_high.toml").write_text(
        'description = "Ten times the learning rate"\nseeds = 3\n[config]\nlr = 0.01\n'
    )
    assert spec_names(tmp_path) == ["lr_high"]
    spec = load_spec("lr_high", tmp_path)
    assert spec.seeds == 3 and spec.config == Config(lr=0.01)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(SpecError) as error:
        load_spec("no_batchnrom")
    message = str(error.value)
    assert "unknown ablation 'no_batchnrom' — did you mean 'no_batchnorm'?" in message
    assert all(name in message for name in SHIPPED)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('description = "x"\n[config]\nbatchnorm = "no"\n', ["bad.toml", "batchnorm", "bool"]),
        ('description = "x"\n[config]\nbatch_norm = false\n', ["bad.toml", "'batch_norm'"]),
        ('description = "x"\nsed = 3\n', ["bad.toml", "unknown key 'sed'"]),
        ('description = "x"\nseeds = "5"\n', ["bad.toml", "seeds: expected int"]),
        ("[config]\nlr = 0.1\n", ["bad.toml", "missing key 'description'"]),
        ('description = "x\n', ["bad.toml", "TOML syntax error"]),
    ],
)
def test_malformed_spec_names_file_and_key(tmp_path, text, fragments):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(UserError) as error:
        load_spec("bad", tmp_path)
    assert all(fragment in str(error.value) for fragment in fragments), str(error.value)


def test_specs_change_the_base_recipe_that_set_gives(tmp_path):
    base = Config(hidden_widths=(24, 12, 8), batch_size=64)
    assert load_spec("no_dropout", base=base).config == Config(
        hidden_widths=(24, 12, 8), batch_size=64, dropout=(0.0, 0.0, 0.0)
    )
    assert load_spec("reference", base=base).config == base


def test_ablate_cli_rejects_unknown_name_before_training(tmp_path, one_line_error):
    line = one_line_error(
        "-m",
        "harness.ablate",
        "no_batchnrom",
        "--results-dir",
        str(tmp_path / "results"),
        "--reports-dir",
        str(tmp_path / "reports"),
    )
    assert "did you mean 'no_batchnorm'?" in line
    assert not (tmp_path / "results").exists()


def test_ablate_list_shows_descriptions_of_any_specs_folder(small_specs):
    result = subprocess.run(
        [sys.executable, "-m", "harness.ablate", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "no_batchnorm" in result.stdout and "BatchNorm removed" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "harness.ablate", "--list", "--specs-dir", str(small_specs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no BatchNorm" in result.stdout and "BatchNorm removed" not in result.stdout
    assert "--factorial components" in result.stdout and "every combination" in result.stdout

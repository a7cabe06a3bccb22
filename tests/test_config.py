"""TrainConfig: YAML + key=value overrides into a frozen dataclass; bad input fails before any work."""

from __future__ import annotations

import dataclasses

import pytest

from lightrnn import cli
from lightrnn.config import TrainConfig


def test_defaults_follow_the_official_code() -> None:
    config = TrainConfig()
    assert (config.embed_dim, config.hidden_dim, config.num_layers, config.dropout) == (512, 512, 2, 0.2)
    assert (config.optimizer, config.bptt, config.batch_size) == ("adam", 32, 20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.1  # type: ignore[misc]


def test_yaml_and_overrides_are_typed(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("embed_dim: 64\nrounds: [2, 3]\nlr: 1e-3\nmodel_options: {initial_table: frequency}\n")
    config = TrainConfig.from_yaml(path, ["hidden_dim=32", "dropout=0", "bf16=false", "rounds=[4,4,4]", "device=cuda:1"])
    assert config.embed_dim == 64 and config.hidden_dim == 32
    assert config.rounds == (4, 4, 4)
    assert config.lr == 1e-3 and isinstance(config.dropout, float)
    assert config.model_options == {"initial_table": "frequency"} and config.device == "cuda:1"


def test_config_hash_is_stable_and_sensitive(tmp_path) -> None:
    base = TrainConfig.from_yaml(None, ["rounds=[2]"])
    assert base.config_hash == TrainConfig(rounds=(2,)).config_hash
    assert base.config_hash != TrainConfig(rounds=(2,), seed=1).config_hash
    written = base.to_yaml(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(written).config_hash == base.config_hash


@pytest.mark.parametrize(
    "override, message",
    [
        ("embed_size=3", r"unknown config key 'embed_size'.*allowed keys: model, embed_dim"),
        ("optimizer=rmsprop", r"optimizer: got 'rmsprop'; allowed values: adam, sgd"),
        ("realloc_method=magic", r"realloc_method.*allowed values: auto, exact, greedy, sparse, refine"),
        ("device=tpu", r"device: got 'tpu'; allowed values: auto, cpu, cuda, cuda:N"),
        ("model=transformer", r"model: unknown model 'transformer'; allowed values: lightrnn"),
        ("rounds=[2, 0]", r"rounds: must be a non-empty list"),
        ("rounds=ten", r"rounds: expected a list of integers"),
        ("dropout=1.5", r"dropout: must be in \[0, 1\)"),
        ("batch_size=2.5", r"batch_size: expected an integer"),
        ("bf16=yes please", r"bf16: expected true or false"),
        ("initial_table=alphabetical", r"initial_table: got 'alphabetical'; allowed values: random, frequency"),
        ("initial_table=missing.npy.gz", r"initial_table: got 'missing.npy.gz'; allowed values: random"),
        ("lr", r"expected key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_yaml(None, [override])


def test_bad_yaml_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("hidden: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*unknown config key\(s\) hidden"):
        TrainConfig.from_yaml(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        TrainConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_key_in_one_line_before_any_work(tmp_path, capsys) -> None:
    code = cli.main(["train", "--data", str(tmp_path / "no-data"), "--model", "lightrnn",
                     "--out", str(tmp_path / "out"), "--set", "lr=-1"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.strip().count("\n") == 0 and "config key lr: must be > 0" in error
    assert not (tmp_path / "out").exists()


def test_train_help_and_the_training_page_list_every_config_key(capsys) -> None:
    """`lightrnn train --help` is generated from TrainConfig; docs/training.md's table names the same keys."""
    import re
    from pathlib import Path

    from lightrnn import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = capsys.readouterr().out
    listed = re.findall(r"^  (\w+) +\S.* default ", help_text.split("config keys (")[1], flags=re.M)
    assert listed == TrainConfig.keys()
    page = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    table = page.split("## Config keys")[1].split("\n## ")[0]
    rows = re.findall(r"^\| ([\w, ]+) \|", table, flags=re.M)[1:]  # [0]: the header row
    assert [key for row in rows for key in row.split(", ")] == TrainConfig.keys()


def test_building_the_command_line_parser_imports_no_torch() -> None:
    """`lightrnn --help` and `lightrnn data list` stay fast: the train epilog reads the field defaults."""
    import subprocess
    import sys

    code = "import sys, lightrnn.cli; lightrnn.cli.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_every_models_option_bounds_are_checked_when_the_config_is_read() -> None:
    """One rule for every model: each bounded option just outside its bounds is refused naming the key,
    the option and the bounds (`table_seed: -1`, `table_seed: 2**63`, `realloc_alternate: 1e9`, `div_value: 0`); at the bounds it
    is accepted. Generated from the models' own `option_bounds`."""
    from lightrnn.registry import model_class, names

    checked = 0
    for model in names():
        for option, (low, high) in model_class(model).option_bounds.items():
            integer = isinstance(low, int) and isinstance(high, int)
            step = 1 if integer else 1e-3
            as_list = option in ("cutoffs", "cutoff_mass")
            huge = [2**63, -(2**63), 10**30] if integer else []  # past any int64: still a range, not a type
            for value in (low - step, high + step, -(2**40) if integer else -1e9, *huge):
                shown = [value] if as_list else value
                with pytest.raises(ValueError, match=rf"config key model_options: {option} of model {model}: .*must be in"):
                    TrainConfig.from_dict({"model": model, "model_options": {option: shown}})
            inside = [low + step] if as_list and option == "cutoff_mass" else [high] if as_list else high
            TrainConfig.from_dict({"model": model, "model_options": {option: inside}})
            checked += 1
    assert checked >= 8

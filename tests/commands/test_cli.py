import pytest

from lightrnn import cli, registry


def test_help_lists_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "lightrnn" in capsys.readouterr().out


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'nope'.*lightrnn"):
        registry.model_class("nope")

"""A part started without its extra names the extra (issue #15)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from schemas.errors import ConfigurationError
from schemas.extras import EXTRA_OF_MODULE, MissingExtraError, missing_extra


def test_a_missing_dependency_names_its_extra():
    err = missing_extra(ModuleNotFoundError("No module named 'faust'", name="faust"), part="processor")
    assert isinstance(err, MissingExtraError) and isinstance(err, ConfigurationError)
    assert "maximum-continual[processor]" in str(err) and "`processor`" in str(err)
    sub = missing_extra(ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn"))
    assert sub is not None and sub.module == "torch" and "[trainer]" in str(sub)


def test_a_missing_module_of_the_project_is_not_an_extra():
    assert missing_extra(ModuleNotFoundError("No module named 'trainer.nope'", name="trainer.nope")) is None


def test_the_table_agrees_with_pyproject():
    extras = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, names in EXTRA_OF_MODULE.items():
        for name in names:
            assert name in extras, (module, name)


def test_an_entry_point_without_its_extra_exits_with_the_message(capsys):
    import pytest

    from schemas.extras import needs_extra

    with pytest.raises(SystemExit) as exit_, needs_extra("processor"):
        raise ModuleNotFoundError("No module named 'rocksdict'", name="rocksdict")
    assert exit_.value.code == 2
    assert "maximum-continual[processor]" in capsys.readouterr().err
    with pytest.raises(ModuleNotFoundError), needs_extra("processor"):  # not a dependency: passes through
        raise ModuleNotFoundError("No module named 'stream_processors.nope'", name="stream_processors.nope")


def test_mc_names_the_extra_when_a_command_lacks_it(monkeypatch, capsys):
    import argparse
    import importlib

    cli = importlib.import_module("mc_cli.main")  # the package exports the function under the same name

    def lacking(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'peft'", name="peft")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: argparse.Namespace(command="trainer", func=lacking))
    assert cli.main(["trainer"]) == 2
    assert "maximum-continual[trainer]" in capsys.readouterr().err

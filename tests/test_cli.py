import argparse
import importlib

import pytest

from mmssl import cli


def registered(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).add_commands(sub)
    return set(sub.choices)


def test_command_table_matches_what_modules_register():
    by_module: dict[str, set[str]] = {}
    for command, module in cli.COMMANDS.items():
        by_module.setdefault(module, set()).add(command)
    for module, commands in by_module.items():
        assert registered(module) == commands, module


def test_bad_input_is_one_clear_line_and_exit_1(tmp_path, caplog):
    code = cli.main(["splits", "--store", str(tmp_path / "nope"), "--fold", "0", "--out", str(tmp_path / "f.tsv")])
    assert code == 1
    assert "is not a finished mmssl store" in caplog.text
    assert not (tmp_path / "f.tsv").exists()


def test_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])
    assert "prepare-two-view" in capsys.readouterr().err

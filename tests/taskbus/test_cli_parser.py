"""The ``taskbus`` command's arguments, parsed in-process: ``--version``, global options before
or after the command, examples in ``--help``, no reStructuredText markup in any help text."""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

import pytest

from taskbus.cli import parser


def _commands(root: argparse.ArgumentParser) -> list[list[str]]:
    """Every command path (``[]``, ``["task"]``, ``["task", "create"]``...) under ``root``."""
    paths: list[list[str]] = [[]]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend([name, *rest] for rest in _commands(sub))
    return paths


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        parser.build().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser.build().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"taskbus {metadata.version('taskbus')}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", "/srv/a", "--log-level", "debug", "--config", "/c.toml", "task", "list"],
        ["task", "list", "--home", "/srv/a", "--log-level", "debug", "--config", "/c.toml"],
        ["--home", "/srv/a", "task", "--log-level", "debug", "list", "--config", "/c.toml"],
    ],
)
def test_global_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = parser.build().parse_args(argv)
    assert (args.home, args.log_level, args.config) == (Path("/srv/a"), "debug", Path("/c.toml"))
    assert args.func.__name__ == "list_tasks"


def test_a_global_option_after_the_command_wins_and_absent_ones_stay() -> None:
    args = parser.build().parse_args(["--home", "/srv/a", "keys", "list", "--home", "/srv/b"])
    assert (args.home, args.log_level, args.config) == (Path("/srv/b"), None, None)


def test_help_has_examples_and_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help([], capsys)
    assert "examples:\n  taskbus up" in top
    assert "taskbus task list --home" in top
    assert "examples:\n  taskbus task create" in _help(["task"], capsys)
    paths = _commands(parser.build())
    assert ["task", "create"] in paths  # the walk found the commands
    assert ["keys", "init"] in paths
    for path in paths:
        text = _help(path, capsys)
        assert "``" not in text, (path, text)
        assert "--home" in text, path  # every command takes the global options

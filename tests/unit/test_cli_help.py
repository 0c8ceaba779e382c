"""Every ``sipguard`` subcommand's ``--help`` works and reads as plain text: each command and
each option has a line of help, and no reStructuredText markup (``code``) leaks into it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sipguard.cli import build_parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                      argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += commands(sub, (*path, name))
    return out


ALL = commands(build_parser())


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"serve", "check-config", "policy check", "replay", "traceback", "rmd import", "list add",
            "notice add", "numbers refresh"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "sipguard")
def test_help_exits_0_and_has_no_rst_markup(path: tuple[str, ...]) -> None:
    run = subprocess.run([sys.executable, "-m", "sipguard", *path, "--help"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: sipguard")
    assert "`" not in run.stdout and "::" not in run.stdout, run.stdout


@pytest.mark.parametrize("path,parser", ALL, ids=[" ".join(p) or "sipguard" for p, _ in ALL])
def test_every_command_and_option_has_a_line_of_help(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"sipguard {' '.join(path)} {choice.dest}: no help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"sipguard {' '.join(path)} {name}: no help"
        assert "`" not in action.help, action.help
        # a sentence cut off (the old policy check -c help ended in "rules need")
        assert action.help.split()[-1] not in ("the", "a", "an", "of", "to", "whose", "need"), action.help

"""Every option and argument of every command says what it is; --version names the release."""

from __future__ import annotations

import argparse

import pytest

from lsg_deploy.cli import build_parser, main


def _commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help(command):
    silent = [a.option_strings or [a.dest] for a in _commands()[command]._actions if not a.help]
    assert silent == []


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("lsg-deploy ")

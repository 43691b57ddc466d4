"""A click group whose commands may live in other packages, imported when first named."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click


class LazyGroup(click.Group):
    """``lazy`` maps a command name to ``"package.module:attribute"``, a click command imported
    only when the name is used (or listed in ``--help``). A command whose import fails is
    still listed, and running it fails with the import error: it never silently disappears,
    and it never breaks the other commands."""

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        target = self.lazy[cmd_name]
        module, _, attribute = target.partition(":")
        try:
            command = getattr(importlib.import_module(module), attribute)
        except Exception as e:  # anything an import can raise: report it, keep the rest working
            command = _unavailable(cmd_name, f"cannot import {target}: {type(e).__name__}: {e}")
        if not isinstance(command, click.Command):
            command = _unavailable(cmd_name, f"{target} is not a click command")
        self.commands[cmd_name] = command
        return command


def _unavailable(name: str, reason: str) -> click.Command:
    def fail() -> None:
        raise click.ClickException(f"valley {name} is unavailable: {reason}")

    return click.Command(
        name,
        callback=fail,
        help=f"(unavailable: {reason})",
        add_help_option=False,  # --help too must say why the command cannot run
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )

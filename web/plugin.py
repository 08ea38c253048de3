"""The admin registers itself with the core the way every plugin does (entry point ``baosong.plugins``):
its tables (``web.models``, so migrations cover them), its commands and its upkeep. The core never imports ``web``."""

from __future__ import annotations

from core.hookspecs import hookimpl
from web import models as _models  # noqa: F401  (the admin's tables are part of the schema)


@hookimpl
def register_commands(cli) -> None:
    from web.cli import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)


@hookimpl
def housekeeping() -> None:
    from web.retries import resume_interrupted

    resume_interrupted()

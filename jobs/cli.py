"""The ``fsnet`` command: one sub-command per job, plus config inspection.

The jobs a cluster can run are cluster/submit.py's ``JOBS`` (the one list: ``fsnet submit`` accepts exactly these);
each is ``jobs/<name>.py`` with its ``cli``. The commands below them run only where the person is.

``fsnet <command>`` imports that command's module alone (``main``): importing every job's module means torch,
torchvision and Ray Train before anything runs, 5.3 s on a 2-core machine, which ``fsnet report`` (0.4 s of imports
of its own), ``fsnet submit`` or a mistyped path paid each time. ``app`` (every command: ``fsnet --help``, tests)
is built when first asked for.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.syntax import Syntax

from cluster import submit
from fsnet.config import dump_config
from jobs.command import ConfigOption, SetOption, console, resolve_config, run_app

LOCAL_ONLY = (
    "search",  # a query at a terminal, against a published index
    "verify",  # re-hash or decode the files here, before trusting them
    "demo",  # a local Ray on a small catalog, for a first look
    "compare",  # two results files read and resampled: seconds, no Ray
)
JOB_COMMANDS = (*submit.JOBS, *LOCAL_ONLY)  # each jobs/<name>.py's cli
OTHER_COMMANDS = ("submit", "config", "jobs")


def build_app(only: str | None = None) -> typer.Typer:
    """The fsnet command with every sub-command, or with ``only`` (one of JOB_COMMANDS or OTHER_COMMANDS)."""
    app = typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,  # jobs/command.py:run_app prints failures (never locals: they hold credentials)
    )
    app.callback()(_group)  # a group even with one sub-command (`fsnet index ...` names it); its docstring: the help
    for name in JOB_COMMANDS:
        if only in (None, name):
            app.command(name)(importlib.import_module(f"jobs.{name}").cli)
    if only in (None, "submit"):
        app.command("submit", context_settings={"allow_extra_args": True})(submit.cli)
    if only in (None, "config"):
        config_app = typer.Typer(no_args_is_help=True, help="Inspect the config tree.")
        config_app.command("show")(config_show)
        app.add_typer(config_app, name="config")
    if only in (None, "jobs"):
        app.add_typer(submit.jobs_app, name="jobs")
    return app


def _group() -> None:
    """fsnet: image retrieval with attribute manipulation (FashionSearchNet-v2) on Ray."""


def config_show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved config (default <- presets <- --set), credentials redacted."""
    cfg = resolve_config(config, set_)
    console.print(Syntax(dump_config(cfg, secrets="redact"), "yaml", theme="ansi_dark", background_color="default"))


def command_of(args: list[str]) -> str | None:
    """The sub-command ``args`` name (their first word that is not an option), when it is one of fsnet's."""
    first = next((a for a in args if not a.startswith("-")), None)
    return first if first in (*JOB_COMMANDS, *OTHER_COMMANDS) else None


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # every command, built at the first `from jobs.cli import app`
        globals()["app"] = build_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    run_app(build_app(command_of(sys.argv[1:])))


if __name__ == "__main__":
    main()

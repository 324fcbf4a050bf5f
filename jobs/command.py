"""What every job's command line shares: --config / --set, config resolution, and one-line errors."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from fsnet.config import Config, load_config
from fsnet.errors import FsnetError

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Optional[list[str]],
    typer.Option("--config", "-c", help="Preset name (configs/<name>.yaml) or YAML file; repeatable, later ones win."),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override one key, e.g. --set split.seed=3 (value parsed as YAML); repeatable, comes last."),
]


def resolve_config(config: list[str] | None, sets: list[str] | None, **options: tuple[str, Any]) -> Config:
    """default.yaml <- presets <- command-line options (flag -> (dotted key, value), None = not given) <- --set."""
    given = [(f"--{flag.replace('_', '-')}", key, value) for flag, (key, value) in options.items() if value is not None]
    return load_config(config or (), sets or (), given)


def run_app(app: typer.Typer) -> None:
    """Run a typer app; an FsnetError ends it with its one-line message and exit status 2."""
    try:
        app()
    except FsnetError as err:
        err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True, highlight=False)
        sys.exit(2)


def single_command(fn: Callable[..., Any]) -> typer.Typer:
    """A typer app holding one job command (for ``python -m jobs.<name>``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command()(fn)
    return app

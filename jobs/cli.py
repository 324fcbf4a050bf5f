"""The ``fsnet`` command: one sub-command per job, plus config inspection.

The jobs a cluster can run are cluster/submit.py's ``JOBS`` (the one list: ``fsnet submit`` accepts exactly these);
each is ``jobs/<name>.py`` with its ``cli``. The commands below them run only where the person is.
"""

from __future__ import annotations

import importlib

import typer
from rich.syntax import Syntax

from cluster import submit
from fsnet.config import dump_config
from jobs.command import ConfigOption, SetOption, console, resolve_config, run_app

LOCAL_ONLY = (
    "search",  # a query at a terminal, against a published index
    "verify",  # re-hash or decode the files here, before trusting them
    "demo",  # a local Ray on a small catalog, for a first look
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # jobs/command.py:run_app prints failures (never locals: they hold credentials)
    help="fsnet: image retrieval with attribute manipulation (FashionSearchNet-v2) on Ray.",
)
for name in (*submit.JOBS, *LOCAL_ONLY):
    app.command(name)(importlib.import_module(f"jobs.{name}").cli)
app.command("submit", context_settings={"allow_extra_args": True})(submit.cli)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the config tree.")
app.add_typer(config_app, name="config")
app.add_typer(submit.jobs_app, name="jobs")


@config_app.command("show")
def config_show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved config (default <- presets <- --set), credentials redacted."""
    cfg = resolve_config(config, set_)
    console.print(Syntax(dump_config(cfg, secrets="redact"), "yaml", theme="ansi_dark", background_color="default"))


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()

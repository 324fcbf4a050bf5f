"""The ``fsnet`` command: one sub-command per job, plus config inspection."""

from __future__ import annotations

import typer
from rich.syntax import Syntax

from cluster import submit
from fsnet.config import dump_config
from jobs import ablation, demo, evaluate, index, pack, pipeline, reindex, report, search, synth, train, verify
from jobs.command import ConfigOption, SetOption, console, resolve_config, run_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # jobs/command.py:run_app prints failures (never locals: they hold credentials)
    help="fsnet: image retrieval with attribute manipulation (FashionSearchNet-v2) on Ray.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the config tree.")
app.add_typer(config_app, name="config")
app.command("synth")(synth.cli)
app.command("pack")(pack.cli)
app.command("train")(train.cli)
app.command("index")(index.cli)
app.command("reindex")(reindex.cli)
app.command("search")(search.cli)
app.command("evaluate")(evaluate.cli)
app.command("report")(report.cli)
app.command("verify")(verify.cli)
app.command("ablation")(ablation.cli)
app.command("pipeline")(pipeline.cli)
app.command("demo")(demo.cli)
app.command("submit", context_settings={"allow_extra_args": True})(submit.cli)
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

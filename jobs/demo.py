"""`fsnet demo`: synthetic catalog (or --catalog) -> pack -> train -> index -> evaluate -> report, with a local Ray
and local storage under ./fsnet-demo/, in minutes on a laptop CPU; prints where report.html is.

    fsnet demo
    fsnet demo --catalog catalogs/fps --config fashion_product_small --config cpu_mobilenet96 --out fps-demo
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.pipeline import pipeline

PRESET = "demo"


def cli(
    out: Annotated[
        str, typer.Option("--out", "-o", callback=absolute_option, help="Folder for everything the demo writes.")
    ] = "fsnet-demo",
    catalog: Annotated[
        Optional[str],
        typer.Option("--catalog", callback=absolute_option, help="A packed catalog instead of the synthetic one."),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train, index, evaluate and report on a small catalog with a local Ray; re-running skips finished steps."""
    start = time.perf_counter()
    cfg = resolve_config(config or [PRESET], set_)
    result = pipeline(cfg, out, catalog, render=catalog is None)
    # the path whole on one line, however narrow the terminal: a person copies it
    console.print(
        f"\n[bold]demo finished in {time.perf_counter() - start:.0f} s[/]; report: {result.report}", soft_wrap=True
    )


if __name__ == "__main__":
    run_app(single_command(cli))

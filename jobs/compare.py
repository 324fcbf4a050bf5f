"""Compare two rankings of the same manipulations: the difference in Top-1/10/20/50 per attribute and averaged, with
a paired-bootstrap 95% interval over queries and the share of resamples where it is <= 0 (eval/comparison.py).

    fsnet compare runs/a/eval runs/b/eval                    # b's best ranking minus a's
    fsnet compare runs/b/eval --method full+logp --against probe       # two runs of one evaluation
    fsnet compare runs/a/eval runs/b/eval --json cmp.json --report reports/a-vs-b

Each argument is a results.json or the folder holding it; outcomes.parquet must be beside it (fsnet evaluate
writes both). Evaluations of other catalogs, splits, galleries or eval.at_once are refused in one line: their
manipulations cannot be paired. No Ray: it reads two small files.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from eval.comparison import (
    AVERAGE,
    Comparison,
    ComparisonError,
    compare,
    difference_text,
    headline_k,
    load_side,
    side,
    summary_line,
)
from eval.comparison_page import COMPARISON_PAGE, render_comparison
from fsnet.storage import Storage, join, parent
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.tables import show


def run_compare(
    storage: Storage,
    base_url: str,
    new_url: str | None,
    method: str | None,
    against: str | None,
    resamples: int,
    seed: int,
    confidence: float,
) -> Comparison:
    """``new`` (``new_url``'s run ``method``) minus ``base`` (``base_url``'s run ``against``); with one file, two of
    its runs. Everything is read and checked before anything is written."""
    if new_url is None:
        if not method or not against:
            raise ComparisonError("one results file: name both runs, --method and --against")
        base = load_side(storage, base_url, against)
        new = side(base.url, base.results, base.outcomes, method)
    else:
        base, new = load_side(storage, base_url, against), load_side(storage, new_url, method)
    return compare(base, new, resamples, seed, confidence)


def comparison_table(c: Comparison) -> Table:
    """Per group and averaged: each K's difference with its interval."""
    table = Table(title=f"{c.new['method']} minus {c.base['method']}, Top-K ({c.pairing}, {c.confidence:.0%} interval)")
    head = headline_k(c)
    ks = [head, *(k for k in c.ks if k != head)]  # the summary K first: a narrow terminal drops columns from the right
    table.add_column("group")
    for k in ks:
        table.add_column(f"Top-{k}", justify="right")
    table.add_column(f"≤ 0 at Top-{head}", justify="right")
    groups = [g for g in c.top_k[f"top_{c.ks[0]}"] if g != AVERAGE] + [AVERAGE]
    for g in groups:
        cells = [difference_text(c.figure(k, g)) for k in ks]
        table.add_row(g, *cells, f"{c.figure(head, g).share_not_above:.1%}", style="bold" if g == AVERAGE else None)
    return table


def cli(
    results: Annotated[
        list[str],
        typer.Argument(callback=absolute_option, help="One or two results.json (or folders holding one): BASE [NEW]."),
    ],
    method: Annotated[
        Optional[str], typer.Option("--method", help="NEW's run (default: its model's best ranking).")
    ] = None,
    against: Annotated[
        Optional[str], typer.Option("--against", help="BASE's run (default: its model's best ranking).")
    ] = None,
    json_out: Annotated[
        Optional[str], typer.Option("--json", callback=absolute_option, help="Write the comparison as JSON here.")
    ] = None,
    report_out: Annotated[
        Optional[str],
        typer.Option("--report", callback=absolute_option, help=f"Folder to write {COMPARISON_PAGE} into."),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Compare two rankings of the same manipulations, with paired-bootstrap intervals."""
    if len(results) > 2:
        raise ComparisonError(f"{len(results)} results files: compare takes one (two of its runs) or two")
    cfg = resolve_config(config, set_)
    storage = Storage(cfg.storage)
    for out in (json_out and parent(json_out), report_out):
        if out:
            storage.check_output_folder(out)
    c = run_compare(
        storage,
        results[0],
        results[1] if len(results) == 2 else None,
        method,
        against,
        cfg.eval.resamples or 1000,
        cfg.eval.bootstrap_seed,
        cfg.eval.confidence,
    )
    show(console, comparison_table(c), where=json_out or "the file --json writes")
    console.print(summary_line(c), soft_wrap=True)
    if json_out:
        storage.write_text(json_out, c.model_dump_json(indent=1))
        console.print(f"wrote {json_out}", soft_wrap=True)
    if report_out:
        page = join(report_out, COMPARISON_PAGE)
        storage.write_text(page, render_comparison(c, summary_line(c), headline_k(c)))
        console.print(f"wrote {page}", soft_wrap=True)


if __name__ == "__main__":
    run_app(single_command(cli))

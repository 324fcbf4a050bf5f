"""Benchmark report from one or more results.json: report.html (self-contained, plots inlined) and report.md
(with its images beside it). Top-K curves per attribute and averaged, one line per run (paper Fig. 5); the
Top-20 table per attribute with the best bold (paper Table 1); NDCG; run metadata; retrieval examples (Fig. 6).

    fsnet report fsnet-demo/eval/results.json --out fsnet-demo/report
    fsnet report runs/*/eval/results.json --out reports/ablation
    python -m jobs.report s3://b/eval/shop/results.json --out s3://b/reports/shop

No Ray: it reads JSON and draws.
"""

from __future__ import annotations

import base64
from typing import Annotated

import typer

from eval.report import build_report, curves_png, example_name, render_html, render_markdown
from eval.results import load_results
from fsnet.storage import Storage, join
from jobs.command import ConfigOption, absolute_option, console, resolve_config, run_app, single_command


def report(storage: Storage, results_urls: list[str], out: str) -> str:
    """Every file read and checked before anything is written; returns report.html's URL."""
    storage.check_output_folder(out)
    built = build_report([(url, load_results(storage, url)) for url in results_urls])
    curves = curves_png(built)
    storage.write_text(join(out, "report.html"), render_html(built, curves))
    storage.write_bytes(join(out, "curves.png"), curves)
    for n, (_, example) in enumerate(built.examples):
        storage.write_bytes(join(out, example_name(n)), base64.b64decode(example.png))
    storage.write_text(join(out, "report.md"), render_markdown(built))
    return join(out, "report.html")


def cli(
    results: Annotated[
        list[str],
        typer.Argument(callback=absolute_option, help="results.json files (local or s3://) from fsnet evaluate."),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", callback=absolute_option, help="Folder for report.html, report.md and their images."
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Write report.html and report.md comparing one or more evaluation runs."""
    cfg = resolve_config(config, None)
    path = report(Storage(cfg.storage), results, out)
    console.print(f"wrote {path} and {join(out, 'report.md')}", soft_wrap=True)


if __name__ == "__main__":
    run_app(single_command(cli))

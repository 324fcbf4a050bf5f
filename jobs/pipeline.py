"""The whole chain as one job: (synth) -> pack -> train -> index -> evaluate -> report, each step skipped when its
output exists (a packed catalog, a finished model.pt, an index of this model, a results.json of this index).

    fsnet demo                                              # the synthetic catalog under ./fsnet-demo, see jobs/demo.py
    python -m jobs.pipeline --config tiny --out runs/tiny --source fsnet-demo/synth
    python -m jobs.pipeline --config tiny --out runs/tiny --synthetic            # renders the synthetic catalog first
Cluster:
    fsnet submit pipeline --config fashion_product_small --wait -- --source s3://b/raw/fps --out s3://b/runs/fps

Layout under --out: synth/ (when the catalog is rendered), catalog/ (unless --catalog is given), run/ (training),
index/, eval/results.json, report/report.html.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from eval.results import RESULTS_FILE, Results, read_results
from fsnet.catalog.manifest import CATALOG_FILE
from fsnet.config import Config
from fsnet.index.manifest import read_current, read_manifest
from fsnet.storage import Storage, join
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.evaluate import evaluate, print_results
from jobs.index import index, print_manifest
from jobs.pack import pack
from jobs.report import report
from jobs.synth import synth
from jobs.train import print_summary, train


@dataclass
class PipelineResult:
    catalog: str
    model: str
    index: str
    results: str
    report: str


def ensure_catalog(cfg: Config, out: str, catalog: str | None, render: bool) -> str:
    """The catalog to use: --catalog as given, else <out>/catalog packed from cfg.source (rendered first into
    <out>/synth when ``render``)."""
    storage = Storage(cfg.storage)
    if catalog is not None:
        return catalog
    url = join(out, "catalog")
    if storage.exists(join(url, CATALOG_FILE)):
        console.print(f"catalog: {url} exists, skipped")
        return url
    if render:
        source = join(out, "synth")
        if not storage.exists(join(source, "labels.csv")):
            console.print(f"synth: rendering {cfg.synthetic.n:,} images into {source}")
            synth(cfg, source, show_progress=False)
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": source})})
    console.print(f"pack: {cfg.source.path} -> {url}")
    pack(cfg, url, show_progress=False)
    return url


def train_index_evaluate(cfg: Config, catalog: str, out: str) -> tuple[str, str, str]:
    """train -> index (the gallery) -> evaluate under ``out``; returns (model, index, results) URLs."""
    storage = Storage(cfg.storage)
    trained = train(cfg, catalog, join(out, "run"))
    print_summary(trained)
    index_url = join(out, "index")
    indexed = index(cfg, trained.model_url, catalog, index_url)
    if indexed.manifest is not None:
        print_manifest(indexed.manifest)
    console.print(indexed.message)
    results_url = join(out, "eval", RESULTS_FILE)
    live = read_manifest(storage, index_url, read_current(storage, index_url))
    if storage.exists(results_url):
        previous = read_results(storage.read_text(results_url), results_url)
        if previous.index.version == live.version and previous.model.sha256 == live.model.sha256:
            console.print(f"evaluate: {results_url} is of index v{live.version}, skipped")
            return trained.model_url, index_url, results_url
    results = evaluate(cfg, index_url, catalog, join(out, "eval"))
    print_results(Results.model_validate(results))
    return trained.model_url, index_url, results_url


def pipeline(cfg: Config, out: str, catalog: str | None = None, render: bool = False) -> PipelineResult:
    catalog_url = ensure_catalog(cfg, out, catalog, render)
    model, index_url, results = train_index_evaluate(cfg, catalog_url, out)
    page = report(Storage(cfg.storage), [results], join(out, "report"))
    return PipelineResult(catalog_url, model, index_url, results, page)


def cli(
    out: Annotated[str, typer.Option("--out", "-o", callback=absolute_option, help="Folder URL for every output.")],
    source: Annotated[
        Optional[str],
        typer.Option("--source", callback=absolute_option, help="Source catalog to pack (sets source.path)."),
    ] = None,
    catalog: Annotated[
        Optional[str],
        typer.Option("--catalog", callback=absolute_option, help="A packed catalog to use instead of packing."),
    ] = None,
    synthetic: Annotated[
        bool,
        typer.Option("--synthetic", help="Render the synthetic catalog (synthetic.*) into <out>/synth and pack it."),
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Pack, train, index, evaluate and report in one job; finished steps are skipped on a re-run."""
    cfg = resolve_config(config, set_, source=("source.path", source))
    result = pipeline(cfg, out, catalog, render=synthetic)
    console.print(f"report: {result.report}", soft_wrap=True)


if __name__ == "__main__":
    run_app(single_command(cli))

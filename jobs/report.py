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
import html
import io
import json
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from fsnet.errors import FsnetError
from fsnet.storage import Storage, join
from jobs.command import ConfigOption, absolute_option, console, resolve_config, run_app, single_command

TABLE_K = 20  # the paper's Table 1 reports Top-20
NDCG_K = 10
# What the report reads of a results.json and of each of its runs (dotted: nested); a file without one of them is
# one line naming it and the key, before anything is drawn.
RESULTS_KEYS = (
    "runs",
    "hardware.machine",
    "hardware.cpus",
    "hardware.gpu",
    "dataset.catalog",
    "dataset.queries",
    "dataset.gallery",
    "dataset.manipulations",
    "dataset.gallery_missing.count",
    "model.backbone",
    "model.image_size",
    "model.variant",
    "index",
    "throughput.manipulations_per_s",
)
RUN_KEYS = ("method", "kind", "k", "groups", "average.top_k", "average.ndcg_full", "average.ndcg_attribute")


@dataclass
class Run:
    label: str  # unique in the report
    run: dict[str, Any]  # one entry of results["runs"]
    results: dict[str, Any]  # the results.json it came from
    source: str


def collect_runs(storage: Storage, urls: list[str]) -> list[Run]:
    """Every run of every results.json; a baseline that several files evaluated (attribute_only of each variant)
    appears once, from the first file; two model runs with the same name are told apart by their file."""
    runs: list[Run] = []
    seen: set[str] = set()
    for url in urls:
        if not storage.exists(url):
            raise FsnetError(f"{url}: no such results file (make one with fsnet evaluate)")
        try:
            results = json.loads(storage.read_text(url))
        except ValueError as err:  # UnicodeDecodeError included
            raise FsnetError(f"{url}: not an fsnet results.json ({type(err).__name__}: {err})") from None
        entries = _checked(url, results)
        for run in entries:
            label = run["method"]
            if label in seen and run["kind"] == "baseline":
                continue
            if label in seen:
                label = f"{label} ({url})"
            seen.add(label)
            runs.append(Run(label, run, results, url))
    if not runs:
        raise FsnetError("no runs in " + ", ".join(urls))
    return runs


def _checked(url: str, results: Any) -> list[dict[str, Any]]:
    """The runs of a results.json that has every key the report reads; else one FsnetError naming the key."""
    if not isinstance(results, dict):
        raise FsnetError(
            f"{url}: not an fsnet results.json (a JSON {type(results).__name__}; fsnet evaluate writes an object with 'runs')"
        )
    missing = _missing(results, RESULTS_KEYS)
    if missing:
        raise FsnetError(f"{url}: no '{missing}' (not an fsnet results.json, or one this report cannot read)")
    if not isinstance(results["runs"], list):
        raise FsnetError(f"{url}: 'runs' is a {type(results['runs']).__name__}, not a list")
    for i, run in enumerate(results["runs"]):
        missing = _missing(run, RUN_KEYS)
        if missing:
            raise FsnetError(
                f"{url}: runs[{i}] has no '{missing}' (not an fsnet results.json, or one this report cannot read)"
            )
    return results["runs"]


def _missing(data: Any, keys: tuple[str, ...]) -> str | None:
    """The first dotted key of ``keys`` that ``data`` lacks (or whose parent is not a mapping)."""
    for key in keys:
        node = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return key
            node = node[part]
    return None


def at(curve: list[float], k: int) -> float:
    return curve[min(k, len(curve)) - 1]


def top_table(runs: list[Run], k: int) -> tuple[list[str], list[list[float | None]]]:
    """Groups (attributes) in first-run order + 'average', and per run the Top-k accuracy of each (None: absent)."""
    groups = list(dict.fromkeys(g for r in runs for g in r.run["groups"]))
    rows = [
        [at(r.run["groups"][g]["top_k"], k) if g in r.run["groups"] else None for g in groups]
        + [at(r.run["average"]["top_k"], k)]
        for r in runs
    ]
    return [*groups, "average"], rows


def curves_png(runs: list[Run]) -> bytes:
    """One panel per attribute and one for the average: Top-K accuracy over K, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, _ = top_table(runs, 1)
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups):
        for r in runs:
            data = r.run["average"] if group == "average" else r.run["groups"].get(group)
            if data:
                ax.plot(r.run["k"], data["top_k"], label=r.label, linewidth=2 if group == "average" else 1.3)
        ax.set_title(group, fontsize=10, fontweight="bold" if group == "average" else "normal")
        ax.set_xlabel("K", fontsize=8)
        ax.set_ylabel("Top-K accuracy", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * ((len(labels) - 1) // 4), 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _best(rows: list[list[float | None]], column: int) -> float | None:
    values = [r[column] for r in rows if r[column] is not None]
    return max(values) if values else None


def metadata_rows(runs: list[Run]) -> list[tuple[str, list[str]]]:
    def seconds(r: Run) -> str:
        t = r.results.get("training") or {}
        return f"{sum(t['seconds'].values()):,.0f} s" if t.get("seconds") else "–"

    def rate(x: float | None, unit: str) -> str:
        return f"{x:,.0f} {unit}" if x else "–"

    def hw(r: Run) -> str:
        h = r.results["hardware"]
        return f"{h['machine']}, {h['cpus']} CPUs, {h['gpu'] or 'no GPU'}"

    d = lambda r: r.results["dataset"]  # noqa: E731
    return [
        ("catalog", [f"{d(r)['catalog']}" for r in runs]),
        (
            "queries / gallery / manipulations",
            [f"{d(r)['queries']:,} / {d(r)['gallery']:,} / {d(r)['manipulations']:,}" for r in runs],
        ),
        (
            "backbone, image size",
            [f"{r.results['model']['backbone']}, {r.results['model']['image_size']} px" for r in runs],
        ),
        (
            "variant",
            [
                r.results["model"]["variant"]
                if r.run["kind"] == "fsnet"
                else f"baseline (model of {r.results['model']['variant']})"
                for r in runs
            ],
        ),
        ("hardware", [hw(r) for r in runs]),
        ("training time", [seconds(r) if r.run["kind"] == "fsnet" else "–" for r in runs]),
        ("index throughput", [rate(r.results["index"].get("images_per_s"), "images/s") for r in runs]),
        (
            "evaluation throughput",
            [
                rate(r.results["throughput"]["manipulations_per_s"], "manipulations/s")
                if r.run["kind"] == "fsnet"
                else "–"
                for r in runs
            ],
        ),
        ("gallery images not indexed", [f"{d(r)['gallery_missing']['count']}" for r in runs]),
    ]


def render_html(runs: list[Run], curves: bytes) -> str:
    k = min(TABLE_K, min(len(r.run["k"]) for r in runs))
    groups, rows = top_table(runs, k)
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>fsnet report</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}"
        " td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} th:first-child,td:first-child{text-align:left}"
        " img{max-width:100%} .match{color:green}</style>",
        "</head>",
        "<body>",
        "<h1>fsnet benchmark report</h1>",
        f"<p>{len(runs)} run(s). Top-K: a hit when one of the K nearest gallery images has exactly the target attributes "
        "(the query's, with the manipulation). Averages count each attribute once.</p>",
        f"<h2>Top-{k} accuracy per attribute</h2>",
        '<table id="top-table">',
        "<tr><th>method</th>" + "".join(f"<th>{e(g)}</th>" for g in groups) + "</tr>",
    ]
    for r, row in zip(runs, rows):
        cells = []
        for c, (g, x) in enumerate(zip(groups, row)):
            text = _fmt(x)
            if x is not None and x == _best(rows, c) and len(runs) > 1:
                text = f"<b>{text}</b>"
            cells.append(
                f'<td data-method="{e(r.label)}" data-group="{e(g)}" data-value="{"" if x is None else repr(x)}">{text}</td>'
            )
        out.append(f"<tr><td>{e(r.label)}</td>{''.join(cells)}</tr>")
    out += [
        "</table>",
        "<h2>Top-K curves</h2>",
        f'<img id="curves" alt="Top-K curves" src="data:image/png;base64,{base64.b64encode(curves).decode()}">',
    ]
    nk = min(NDCG_K, k)
    out += [
        f"<h2>NDCG@{nk} (average over attributes)</h2>",
        '<table id="ndcg-table">',
        "<tr><th>method</th><th>full target</th><th>manipulated attribute</th></tr>",
    ]
    for r in runs:
        full, attr = at(r.run["average"]["ndcg_full"], nk), at(r.run["average"]["ndcg_attribute"], nk)
        out.append(
            f'<tr><td>{e(r.label)}</td><td data-value="{full!r}">{full:.3f}</td><td data-value="{attr!r}">{attr:.3f}</td></tr>'
        )
    out += [
        "</table>",
        "<h2>Runs</h2>",
        '<table id="meta-table">',
        "<tr><th></th>" + "".join(f"<th>{e(r.label)}</th>" for r in runs) + "</tr>",
    ]
    for name, values in metadata_rows(runs):
        out.append(f"<tr><td>{e(name)}</td>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>")
    out.append("</table>")
    examples = [
        (r, x)
        for r in runs
        if r.run["kind"] == "fsnet"
        for x in r.results.get("examples", [])
        if x["method"] == r.run["method"]
    ]
    if examples:
        out.append("<h2>Retrieval examples</h2>")
        for r, x in examples:
            marks = ", ".join(
                f'<span class="{"match" if y["match"] else ""}">{e(y["id"])}{" ✓" if y["match"] else ""}</span>'
                for y in x["results"]
            )
            out.append(
                f"<h3>{e(r.label)}: query {e(x['query'])}, {e(x['change'])}</h3><p>top {len(x['results'])}: {marks}</p>"
            )
            out.append(f'<img class="example" alt="query {e(x["query"])}" src="data:image/png;base64,{x["png"]}">')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_markdown(runs: list[Run], example_files: list[tuple[Run, dict, str]]) -> str:
    k = min(TABLE_K, min(len(r.run["k"]) for r in runs))
    groups, rows = top_table(runs, k)
    lines = [
        "# fsnet benchmark report",
        "",
        f"## Top-{k} accuracy per attribute",
        "",
        "| method | " + " | ".join(groups) + " |",
        "| --- |" + " --- |" * len(groups),
    ]
    for r, row in zip(runs, rows):
        cells = [
            (f"**{_fmt(x)}**" if x is not None and x == _best(rows, c) and len(runs) > 1 else _fmt(x))
            for c, x in enumerate(row)
        ]
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Top-K curves",
        "",
        "![Top-K curves](curves.png)",
        "",
        f"## NDCG@{min(NDCG_K, k)} (average)",
        "",
        "| method | full target | manipulated attribute |",
        "| --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r.label} | {at(r.run['average']['ndcg_full'], min(NDCG_K, k)):.3f} | {at(r.run['average']['ndcg_attribute'], min(NDCG_K, k)):.3f} |"
        )
    lines += ["", "## Runs", "", "| | " + " | ".join(r.label for r in runs) + " |", "| --- |" + " --- |" * len(runs)]
    for name, values in metadata_rows(runs):
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    if example_files:
        lines += ["", "## Retrieval examples", ""]
        for r, x, name in example_files:
            marks = ", ".join(f"{y['id']}{' ✓' if y['match'] else ''}" for y in x["results"])
            lines += [
                f"**{r.label}**: query {x['query']}, {x['change']} — top {len(x['results'])}: {marks}",
                "",
                f"![example]({name})",
                "",
            ]
    return "\n".join(lines) + "\n"


def report(storage: Storage, results_urls: list[str], out: str) -> str:
    runs = collect_runs(storage, results_urls)
    curves = curves_png(runs)
    storage.write_text(join(out, "report.html"), render_html(runs, curves))
    storage.write_bytes(join(out, "curves.png"), curves)
    example_files = []
    for r in runs:
        if r.run["kind"] != "fsnet":
            continue
        for x in (e for e in r.results.get("examples", []) if e["method"] == r.run["method"]):
            name = f"example-{len(example_files):02d}.png"
            storage.write_bytes(join(out, name), base64.b64decode(x["png"]))
            example_files.append((r, x, name))
    storage.write_text(join(out, "report.md"), render_markdown(runs, example_files))
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
    console.print(f"wrote {path} and {join(out, 'report.md')}")


if __name__ == "__main__":
    run_app(single_command(cli))

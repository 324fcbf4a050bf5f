"""The benchmark report's content, built once from Results (eval/results.py), and its two renderers.

``build_report`` computes the headline (each model's ranking against its yardstick, the probe, with the difference)
and every table: the Top-k accuracy per attribute and averaged (paper Table 1, the best of
each column marked) with each run's difference to the ``probe`` baseline (the yardstick, eval/probe.py), the
held-out accuracy of the models' classifiers and of the probe, NDCG@10 averaged, the runs' facts (dataset, model,
hardware, speeds), the Top-K curves' data (paper Fig. 5) and the retrieval examples (Fig. 6). ``render_html``
(self-contained, the curves inlined) and ``render_markdown`` (images beside it) only lay it out; ``curves_png``
draws the curves. jobs/report.py reads the
files and writes the outputs.

A results.json that recorded intervals (eval/bootstrap.py: a bootstrap over queries) has them shown: a table cell
``0.723 ± 0.012`` (half the interval's width; the exact ends in the HTML cell's title), a band around each curve,
and the headline's paired interval of the difference to the probe. A file without them renders as it always did.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

from eval.bootstrap import CONFIDENCE
from eval.results import Band, Curves, Difference, Example, Results, Run
from fsnet.errors import FsnetError

TABLE_K = 20  # the paper's Table 1 reports Top-20
NDCG_K = 10
AVERAGE = "average"
MEAN = "mean"
FUSED_SUFFIX = "+logp"  # a method fused with its classifiers (eval/fused_logp.py): drawn in its method's colour, dashed
PROBE = "probe"  # the probe baseline's run (eval/probe.py): every other run's average is compared with it


@dataclass
class ReportRun:
    label: str  # unique in the report
    run: Run
    results: Results  # the results.json it came from
    source: str  # that file's URL


@dataclass
class Curve:
    label: str  # the run's
    k: list[int]
    top_k: list[float]
    band: Band | None = None  # its interval at every K; None when the run recorded none


@dataclass
class Headline:
    """A model's ranking against the probe of the same results.json (the same gallery and manipulations)."""

    method: str  # the ranking ``fsnet search`` uses: ``<method>+logp`` when the model has a fusion weight
    top: float  # its average Top-k
    probe: float | None  # the probe's; None when the file has no probe run
    probe_model: str | None  # what the probe is: "frozen <backbone> at <size> px + logistic regression"
    paired: Difference | None = None  # results.json's headline at the same K: the difference's paired interval
    queries: int | None = None  # the queries that paired bootstrap resampled
    resamples: int | None = None  # how many times; None when the file does not say
    confidence: float = CONFIDENCE  # the interval's coverage

    @property
    def difference(self) -> float | None:
        return None if self.probe is None else self.top - self.probe


@dataclass
class Report:
    runs: list[ReportRun]
    k: int  # the K of the Top-K table: TABLE_K, or less when a run's curves are shorter
    groups: list[str]  # the table's columns: groups (attributes) in first-run order, then "average"
    top: list[list[float | None]]  # per run, per column: Top-k accuracy (None: the run has no such group)
    top_interval: list[list[tuple[float, float] | None]]  # per run, per column: (low, high) at k; None: not recorded
    best: list[float | None]  # per column: the best value, marked in the table; None with one run or none present
    vs_probe: list[float | None] | None  # per run: average Top-k minus the probe's; None: no probe run in the report
    vs_probe_interval: list[tuple[float, float] | None] | None  # per run: the paired (low, high) of its file's headline
    accuracy_columns: list[str]  # the held-out accuracy table's: attributes, then "mean"
    accuracy: list[tuple[str, list[float | None]]]  # (row: a model run's label or "probe", a cell per column)
    probe_notes: list[str]  # how the probe was built; why one could not be
    ndcg_k: int
    ndcg: list[tuple[float, float]]  # per run: average NDCG@ndcg_k (full target, manipulated attribute)
    ndcg_interval: list[tuple[tuple[float, float] | None, tuple[float, float] | None]]  # per run: (low, high) of each
    facts: list[tuple[str, list[str]]]  # (row name, one cell per run)
    curves: dict[str, list[Curve]]  # per column: a Top-K curve per run that has it
    examples: list[tuple[ReportRun, Example]]  # the model runs' retrieval examples, in run order
    headlines: list[Headline]  # one per results.json, in order
    interval_note: str | None  # what ± means; None when no run has an interval


def collect_runs(loaded: list[tuple[str, Results]]) -> list[ReportRun]:
    """Every run of every (url, results); a baseline that several files evaluated (attribute_only of each variant)
    appears once, from the first file; two model runs with the same name are told apart by their file."""
    runs: list[ReportRun] = []
    seen: set[str] = set()
    for url, results in loaded:
        for run in results.runs:
            label = run.method
            if label in seen and run.role == "baseline":
                continue
            if label in seen:
                label = f"{label} ({url})"
            seen.add(label)
            runs.append(ReportRun(label, run, results, url))
    if not runs:
        raise FsnetError("no runs in " + ", ".join(url for url, _ in loaded))
    return runs


def at(curve: list[float], k: int) -> float:
    """The curve's value at K = k (its last when shorter)."""
    return curve[min(k, len(curve)) - 1]


def build_report(loaded: list[tuple[str, Results]]) -> Report:
    runs = collect_runs(loaded)
    k = min(TABLE_K, min(len(r.run.k) for r in runs))
    groups = [*dict.fromkeys(g for r in runs for g in r.run.groups), AVERAGE]
    top = [[at(c.top_k, k) if c else None for c in (_curves(r.run, g) for g in groups)] for r in runs]
    top_interval = [[band_at(_curves(r.run, g), "top_k", k) for g in groups] for r in runs]
    best = [_best([row[c] for row in top]) if len(runs) > 1 else None for c in range(len(groups))]
    nk = min(NDCG_K, k)
    ndcg = [(at(r.run.average.ndcg_full, nk), at(r.run.average.ndcg_attribute, nk)) for r in runs]
    ndcg_interval = [tuple(band_at(r.run.average, key, nk) for key in ("ndcg_full", "ndcg_attribute")) for r in runs]
    curves = {
        g: [Curve(r.label, r.run.k, c.top_k, band(c, "top_k")) for r in runs if (c := _curves(r.run, g))]
        for g in groups
    }
    examples = [(r, x) for r in runs if r.run.role == "model" for x in r.results.examples if x.method == r.run.method]
    columns, accuracy = accuracy_table(runs)
    shown = vs_probe(runs, k)
    return Report(
        runs,
        k,
        groups,
        top,
        top_interval,
        best,
        shown,
        None if shown is None else vs_probe_intervals(runs, k),
        columns,
        accuracy,
        probe_notes(runs),
        nk,
        ndcg,
        ndcg_interval,
        facts(runs),
        curves,
        examples,
        headlines([results for _, results in loaded], k),
        interval_note([r.results for r, row, nd in zip(runs, top_interval, ndcg_interval) if any(row) or any(nd)]),
    )


def band(curves: Curves | None, key: str) -> Band | None:
    """The curve ``key``'s (``top_k``, ``ndcg_full``, ``ndcg_attribute``) interval at every K; None when the
    results.json recorded none (written before intervals were, or with eval.resamples 0)."""
    return None if curves is None or curves.interval is None else curves.interval.get(key)


def band_at(curves: Curves | None, key: str, k: int) -> tuple[float, float] | None:
    """(low, high) of the curve ``key``'s interval at K = k (as ``at``); None without one."""
    b = band(curves, key)
    return None if b is None else (at(b.low, k), at(b.high, k))


def confidence(results: Results) -> float:
    """The coverage of the file's intervals: its bootstrap's (a hand-made file may leave it out: the default)."""
    return CONFIDENCE if results.bootstrap is None else results.bootstrap.confidence


def paired(results: Results, method: str, k: int) -> Difference | None:
    """The file's headline when it puts ``method`` against its own probe at Top-k; None otherwise (another run, a
    report whose K is shorter than the headline's, a file without one)."""
    h = results.headline
    if h is None or h.method != method or h.against != PROBE or h.k != k:
        return None
    return h if any(r.method == PROBE for r in results.runs) else None


def interval_note(files: list[Results]) -> str | None:
    """One line on what ± means, for the results.json files whose runs have intervals (None when there are none):
    their coverage and resamples."""
    files = list({id(x): x for x in files}.values())
    if not files:
        return None
    level = " or ".join(f"{c:.0%}" for c in sorted({confidence(x) for x in files}))
    counts = sorted({x.bootstrap.resamples for x in files if x.bootstrap is not None})
    resamples = f", {' or '.join(f'{n:,}' for n in counts)} resamples" if counts else ""
    return (
        f"±: half the {level} interval from a bootstrap over queries (every manipulation of a drawn query "
        f"together{resamples})."
    )


def headlines(loaded: list[Results], k: int) -> list[Headline]:
    """Per results.json: the model's best-informed ranking (its ``+logp`` row when it has one, else its own) and
    the probe's average Top-k beside it."""
    out = []
    for results in loaded:
        model = results.model_run
        ranking = next((r for r in results.runs if r.method == f"{model.method}{FUSED_SUFFIX}"), model)
        probe = next((r for r in results.runs if r.method == PROBE), None)
        p = results.probe
        described = f"frozen {p.backbone} at {p.image_size} px + logistic regression" if p is not None else None
        top = at(ranking.average.top_k, k)
        b = results.bootstrap
        out.append(
            Headline(
                ranking.method,
                top,
                None if probe is None else at(probe.average.top_k, k),
                described,
                paired(results, ranking.method, k),
                results.dataset.queries,
                None if b is None else b.resamples,
                confidence(results),
            )
        )
    return out


def headline_text(h: Headline, k: int) -> str:
    """One sentence: the model's Top-k, the probe's, and the difference, with the difference's paired interval
    when the results.json recorded one (both rankings resampled with the same draws of the queries)."""
    first = f"{h.method}: Top-{k} {h.top:.3f}"
    if h.probe is None:
        return f"{first} (no probe in this evaluation)"
    text = f"{first} against the probe's {h.probe:.3f} ({h.probe_model}): {h.difference:+.3f}"
    if h.paired is None:
        return text
    resamples = "" if h.resamples is None else f", {h.resamples:,} resamples"
    return (
        f"{text}, {h.confidence:.0%} interval {h.paired.low:+.3f} to {h.paired.high:+.3f} (paired bootstrap over "
        f"{h.queries:,} queries{resamples})"
    )


def vs_probe(runs: list[ReportRun], k: int) -> list[float | None] | None:
    """Per run, its average Top-k minus the probe's: the probe run of the same results.json (the same gallery and
    manipulations), else the report's; None for the probe itself. None when no run is a probe."""
    shown = next((r.run for r in runs if r.run.method == PROBE), None)  # every file's runs are in ``runs``
    if shown is None:
        return None
    out: list[float | None] = []
    for r in runs:
        probe = next((x for x in r.results.runs if x.method == PROBE), shown)
        mine = r.run.method == PROBE and r.run is probe
        out.append(None if probe is None or mine else at(r.run.average.top_k, k) - at(probe.average.top_k, k))
    return out


def vs_probe_intervals(runs: list[ReportRun], k: int) -> list[tuple[float, float] | None]:
    """Per run, the paired interval of its difference to its file's probe: the file's headline's, for the run the
    headline measures; None for every other run (an interval of the difference needs both rankings resampled
    together, which only the headline recorded)."""
    return [None if (h := paired(r.results, r.run.method, k)) is None else (h.low, h.high) for r in runs]


def accuracy_table(runs: list[ReportRun]) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """Held-out classifier accuracy: a row per model run that recorded it, then the probe's (of the probe run
    shown); columns: the attributes, then their mean. No rows: ([], [])."""
    rows: list[tuple[str, dict[str, float | None], float | None]] = [
        (r.label, r.results.model.accuracy, r.results.model.mean_accuracy)
        for r in runs
        if r.run is r.results.model_run and r.results.model.accuracy is not None  # one row per model (not per ranking)
    ]
    probe = next((r.results.probe for r in runs if r.run.method == PROBE and r.results.probe), None)
    if probe is not None:
        rows.append((PROBE, probe.accuracy, probe.mean_accuracy))
    if not rows:
        return [], []
    names = list(dict.fromkeys(a for _, accuracy, _ in rows for a in accuracy))
    return [*names, MEAN], [(label, [acc.get(a) for a in names] + [mean]) for label, acc, mean in rows]


def probe_notes(runs: list[ReportRun]) -> list[str]:
    """One line on the probe shown (its trunk, fit and strengths), and one per results.json whose probe could not
    be built."""
    notes = []
    shown = next((r for r in runs if r.run.method == PROBE and r.results.probe), None)
    if shown is not None:
        p = shown.results.probe
        strengths = ", ".join(f"{a} {'–' if c is None else f'{c:g}'}" for a, c in p.strength.items())
        notes.append(
            f"probe: {p.backbone} ({p.weights}) frozen at {p.image_size} px, {p.features} pooled features, one "
            f"logistic regression per attribute fitted on {p.fit_images:,} training images in {p.fit_s:.1f} s"
            f"{' (read back from the trunk cache)' if p.fit_reused else ''}, the "
            f"inverse L2 strength chosen on {p.validation_images:,} validation images ({strengths}); "
            f"{p.gallery_rejected.count:,} gallery images without trunk features ranked last"
        )
    seen = set()
    for r in runs:
        line = r.results.probe_unavailable
        if line and r.source not in seen:
            seen.add(r.source)
            notes.append(f"{r.source}: {line}")
    return notes


def _curves(run: Run, group: str):
    return run.average if group == AVERAGE else run.groups.get(group)


def _best(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def facts(runs: list[ReportRun]) -> list[tuple[str, list[str]]]:
    """The runs' table: dataset, model, hardware and speeds, one cell per run (– where it does not apply)."""

    def seconds(r: ReportRun) -> str:
        t = r.results.training or {}
        return f"{sum(t['seconds'].values()):,.0f} s" if t.get("seconds") and r.run.role == "model" else "–"

    def rate(x: float | None, unit: str) -> str:
        return f"{x:,.0f} {unit}" if x else "–"

    def hw(r: ReportRun) -> str:
        h = r.results.hardware
        return f"{h.machine}, {h.cpus} CPUs, {h.gpu or 'no GPU'}"

    def variant(r: ReportRun) -> str:
        v, p = r.results.model.variant, r.results.probe
        if r.run.method.startswith(PROBE) and p is not None:
            return f"baseline (frozen {p.backbone}, {p.image_size} px)"
        return v if r.run.role == "model" else f"baseline (model of {v})"

    def speed(r: ReportRun) -> str:
        own = r.run is r.results.model_run  # the model's own ranking (not its +logp row, nor a baseline)
        return rate(r.results.throughput.manipulations_per_s, "manipulations/s") if own else "–"

    d = [r.results.dataset for r in runs]
    m = [r.results.model for r in runs]
    return [
        ("catalog", [x.catalog for x in d]),
        ("queries / gallery / manipulations", [f"{x.queries:,} / {x.gallery:,} / {x.manipulations:,}" for x in d]),
        ("backbone, image size", [f"{x.backbone}, {x.image_size} px" for x in m]),
        ("variant", [variant(r) for r in runs]),
        ("hardware", [hw(r) for r in runs]),
        ("training time", [seconds(r) for r in runs]),
        ("index throughput", [rate(r.results.index.images_per_s, "images/s") for r in runs]),
        ("evaluation throughput", [speed(r) for r in runs]),
        ("gallery images not indexed", [f"{x.gallery_missing.count}" for x in d]),
    ]


def example_name(n: int) -> str:
    """The n-th retrieval example's PNG beside report.md."""
    return f"example-{n:02d}.png"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def banded(x: float | None, interval: tuple[float, float] | None) -> str:
    """A table cell: ``0.723 ± 0.012``, the value and half its interval's width (the bootstrap's percentile interval
    need not be symmetric: the HTML cell's title has its ends); the value alone without an interval."""
    if x is None or interval is None:
        return _fmt(x)
    low, high = interval
    return f"{x:.3f} ± {(high - low) / 2:.3f}"


def _signed_paired(x: float | None, interval: tuple[float, float] | None) -> str:
    """The vs-probe cell: ``+0.355 [+0.330, +0.380]`` with the paired interval, ``+0.355`` without."""
    if x is None or interval is None:
        return _signed(x)
    return f"{x:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]"


def _interval_attributes(interval: tuple[float, float] | None, coverage: float, signed: bool = False) -> str:
    """An HTML cell's interval: its exact ends in a title (shown on hover) and in data-low and data-high; '' without
    one."""
    if interval is None:
        return ""
    low, high = interval
    shown = f"{low:+.3f} to {high:+.3f}" if signed else f"{low:.3f}–{high:.3f}"  # a dash before + reads badly
    return f' title="{coverage:.0%} interval {shown}" data-low="{low!r}" data-high="{high!r}"'


VS_PROBE_NOTE = "vs probe: the run's average minus the probe's (the frozen pretrained trunk's linear probe)."
PAIRED_NOTE = (
    "[low, high] in vs probe: the difference's interval from a paired bootstrap (the run and the probe resampled "
    "with the same draws of the queries)."
)
ACCURACY_NOTE = (
    "On the query and gallery images (each once; unknown labels do not count): the models' own attribute "
    "classifiers and the probe's."
)


def interval_lines(report: Report) -> list[str]:
    """The notes under the Top-k table on its intervals: what ± means, what the vs-probe brackets are; none when
    no run has an interval."""
    lines = [] if report.interval_note is None else [report.interval_note]
    if report.vs_probe_interval is not None and any(report.vs_probe_interval):
        lines.append(PAIRED_NOTE)
    return lines


def render_html(report: Report, curves: bytes) -> str:
    """report.html: self-contained (the curves and examples inlined as base64 PNG); table cells carry their
    values (data-method and data-group, data-vs-probe, data-accuracy and data-column; data-value, and data-low and
    data-high where there is an interval) for tests and scripts."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>fsnet report</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}"
        " td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
        " th:first-child,td:first-child{text-align:left}"
        " img{max-width:100%} .match{color:green}"
        " .headline{font-size:1.15em;background:#f1f7f1;border-left:4px solid #3a7d3a;padding:.6em 1em}</style>",
        "</head>",
        "<body>",
        "<h1>fsnet benchmark report</h1>",
        *(
            f'<p class="headline" data-method="{e(h.method)}" data-value="{h.difference!r}"'
            + ("" if h.paired is None else f' data-low="{h.paired.low!r}" data-high="{h.paired.high!r}"')
            + f"><strong>{e(headline_text(h, report.k))}</strong></p>"
            for h in report.headlines
        ),
        f"<p>{len(report.runs)} run(s). Top-K: a hit when one of the K nearest gallery images has exactly the target "
        "attributes (the query's, with the manipulation). Averages count each attribute once.</p>",
        f"<h2>Top-{report.k} accuracy per attribute</h2>",
        *([f"<p>{e(VS_PROBE_NOTE)}</p>"] if report.vs_probe is not None else []),
        '<table id="top-table">',
        "<tr><th>method</th>"
        + "".join(f"<th>{e(g)}</th>" for g in report.groups)
        + ("<th>vs probe</th>" if report.vs_probe is not None else "")
        + "</tr>",
    ]
    for n, (r, row, intervals) in enumerate(zip(report.runs, report.top, report.top_interval)):
        coverage = confidence(r.results)
        cells = []
        for g, x, interval, best in zip(report.groups, row, intervals, report.best):
            text = banded(x, interval)
            if x is not None and x == best:
                text = f"<b>{text}</b>"
            value = "" if x is None else repr(x)
            cells.append(
                f'<td data-method="{e(r.label)}" data-group="{e(g)}" data-value="{value}"'
                f"{_interval_attributes(None if x is None else interval, coverage)}>{text}</td>"
            )
        if report.vs_probe is not None:
            x, interval = report.vs_probe[n], report.vs_probe_interval[n]
            cells.append(
                f'<td data-vs-probe="{e(r.label)}" data-value="{"" if x is None else repr(x)}"'
                f"{_interval_attributes(None if x is None else interval, coverage, signed=True)}>"
                f"{_signed_paired(x, interval)}</td>"
            )
        out.append(f"<tr><td>{e(r.label)}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    out += [f'<p class="interval">{e(line)}</p>' for line in interval_lines(report)]
    if report.accuracy:
        out += [
            "<h2>Held-out classifier accuracy</h2>",
            f"<p>{e(ACCURACY_NOTE)}</p>",
            '<table id="accuracy-table">',
            "<tr><th></th>" + "".join(f"<th>{e(c)}</th>" for c in report.accuracy_columns) + "</tr>",
        ]
        for label, values in report.accuracy:
            cells = "".join(
                f'<td data-accuracy="{e(label)}" data-column="{e(c)}" data-value="{"" if x is None else repr(x)}">'
                f"{_fmt(x)}</td>"
                for c, x in zip(report.accuracy_columns, values)
            )
            out.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
        out.append("</table>")
    out += [f'<p class="probe">{e(line)}</p>' for line in report.probe_notes]
    out += [
        "<h2>Top-K curves</h2>",
        f'<img id="curves" alt="Top-K curves" src="data:image/png;base64,{base64.b64encode(curves).decode()}">',
        f"<h2>NDCG@{report.ndcg_k} (average over attributes)</h2>",
        '<table id="ndcg-table">',
        "<tr><th>method</th><th>full target</th><th>manipulated attribute</th></tr>",
    ]
    for r, values, intervals in zip(report.runs, report.ndcg, report.ndcg_interval):
        cells = "".join(
            f'<td data-value="{x!r}"{_interval_attributes(interval, confidence(r.results))}>{banded(x, interval)}</td>'
            for x, interval in zip(values, intervals)
        )
        out.append(f"<tr><td>{e(r.label)}</td>{cells}</tr>")
    out += [
        "</table>",
        "<h2>Runs</h2>",
        '<table id="meta-table">',
        "<tr><th></th>" + "".join(f"<th>{e(r.label)}</th>" for r in report.runs) + "</tr>",
    ]
    for name, values in report.facts:
        out.append(f"<tr><td>{e(name)}</td>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>")
    out.append("</table>")
    if report.examples:
        out.append("<h2>Retrieval examples</h2>")
        for r, x in report.examples:
            marks = ", ".join(
                f'<span class="{"match" if y.match else ""}">{e(y.id)}{" ✓" if y.match else ""}</span>'
                for y in x.results
            )
            out.append(f"<h3>{e(r.label)}: query {e(x.query)}, {e(x.change)}</h3><p>top {len(x.results)}: {marks}</p>")
            out.append(f'<img class="example" alt="query {e(x.query)}" src="data:image/png;base64,{x.png}">')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    """report.md: the same tables; the curves (curves.png) and examples (example_name(n)) as images beside it."""
    groups = report.groups
    lines = [
        "# fsnet benchmark report",
        "",
        *(f"**{headline_text(h, report.k)}**\n" for h in report.headlines),
        f"## Top-{report.k} accuracy per attribute",
        "",
        "| method | " + " | ".join([*groups, *(["vs probe"] if report.vs_probe is not None else [])]) + " |",
        "| --- |" + " --- |" * (len(groups) + (report.vs_probe is not None)),
    ]
    for n, (r, row, intervals) in enumerate(zip(report.runs, report.top, report.top_interval)):
        cells = [
            f"**{banded(x, interval)}**" if x is not None and x == best else banded(x, interval)
            for x, interval, best in zip(row, intervals, report.best)
        ]
        if report.vs_probe is not None:
            cells.append(_signed_paired(report.vs_probe[n], report.vs_probe_interval[n]))
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    if report.vs_probe is not None:
        lines += ["", VS_PROBE_NOTE]
    lines += [line for note in interval_lines(report) for line in ("", note)]
    if report.accuracy:
        columns = report.accuracy_columns
        lines += [
            "",
            "## Held-out classifier accuracy",
            "",
            "| | " + " | ".join(columns) + " |",
            "| --- |" + " --- |" * len(columns),
            *(f"| {label} | " + " | ".join(_fmt(x) for x in values) + " |" for label, values in report.accuracy),
            "",
            ACCURACY_NOTE,
        ]
    if report.probe_notes:
        lines += ["", *report.probe_notes]
    lines += [
        "",
        "## Top-K curves",
        "",
        "![Top-K curves](curves.png)",
        "",
        f"## NDCG@{report.ndcg_k} (average)",
        "",
        "| method | full target | manipulated attribute |",
        "| --- | --- | --- |",
    ]
    for r, values, intervals in zip(report.runs, report.ndcg, report.ndcg_interval):
        lines.append(f"| {r.label} | " + " | ".join(banded(x, i) for x, i in zip(values, intervals)) + " |")
    labels = [r.label for r in report.runs]
    lines += ["", "## Runs", "", "| | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for name, values in report.facts:
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    if report.examples:
        lines += ["", "## Retrieval examples", ""]
        for n, (r, x) in enumerate(report.examples):
            marks = ", ".join(f"{y.id}{' ✓' if y.match else ''}" for y in x.results)
            lines += [
                f"**{r.label}**: query {x.query}, {x.change} — top {len(x.results)}: {marks}",
                "",
                f"![example]({example_name(n)})",
                "",
            ]
    return "\n".join(lines) + "\n"


def curve_styles(labels: list[str]) -> dict[str, tuple[int, str]]:
    """Per curve label (colour index into matplotlib's tab20, line style): one colour per method, the first ten
    tab20's strong colours, then its light ones; ``<method>+logp`` takes its method's colour, dashed. An ablation
    draws 18 lines: the default ten-colour cycle gave rank and adde one colour."""
    methods: list[str] = []
    for label in labels:
        base = label.removesuffix(FUSED_SUFFIX)
        if base not in methods:
            methods.append(base)
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # tab20 pairs a strong colour with a light one
    return {
        label: (
            order[methods.index(label.removesuffix(FUSED_SUFFIX)) % 20],
            "--" if label.endswith(FUSED_SUFFIX) else "-",
        )
        for label in labels
    }


def curves_png(report: Report) -> bytes:
    """One panel per attribute and one for the average: Top-K accuracy over K, a line per run (with its interval
    as a band around it when the run recorded one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report.groups
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    styles = curve_styles([c.label for g in groups for c in report.curves[g]])
    palette = plt.get_cmap("tab20").colors
    for ax, group in zip(axes.flat, groups):
        for curve in report.curves[group]:
            colour, style = styles[curve.label]
            if curve.band is not None:  # the interval at every K, in the line's colour, faint
                ax.fill_between(
                    curve.k, curve.band.low, curve.band.high, color=palette[colour], alpha=0.15, linewidth=0
                )
            ax.plot(
                curve.k,
                curve.top_k,
                label=curve.label,
                color=palette[colour],
                linestyle=style,
                linewidth=2 if group == AVERAGE else 1.3,
            )
        ax.set_title(group, fontsize=10, fontweight="bold" if group == AVERAGE else "normal")
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

"""A results.json (fsnet evaluate) as a quality table under bench/results/, with its intervals, so that the docs
render it (bench/render_docs.py) rather than copy figures by hand.

    python bench/quality_table.py runs/fps/eval/results.json --name fps_intervals

One row per run: Top-1/10/20/50 averaged over attributes as ``0.723 ± 0.012`` (half the 95% interval of a bootstrap
over queries, recorded by fsnet evaluate), the difference to the probe at Top-20 with its *paired* interval
(recomputed here from outcomes.parquet: every run against the probe with the same draws of the queries), the
Top-20 per attribute, and the held-out accuracy of the run's classifiers where it has them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eval.comparison import compare, side
from eval.outcomes import OUTCOMES_FILE, read_outcomes
from eval.report import PROBE, band_at, banded
from eval.results import Results, read_results

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.quality_table
    from bench.record import Table, add_record_options, write_result

KS = (1, 10, 20, 50)
K = 20


def cell(curves, k: int) -> str:
    """``0.723 ± 0.012`` at K = k (the value alone when no interval was recorded): the report's cell."""
    return banded(curves.top_k[k - 1], band_at(curves, "top_k", k))


def signed(x: float) -> str:
    return f"{round(x, 3) + 0.0:+.3f}".replace("-", "−")


def rows_of(url: str, results: Results, resamples: int) -> tuple[list[str], list[list]]:
    outcomes = read_outcomes(Path(url).with_name(OUTCOMES_FILE).read_bytes(), OUTCOMES_FILE)
    groups = list(results.runs[0].groups)
    k_max = len(results.runs[0].k)
    ks, head = [k for k in KS if k <= k_max] or [k_max], min(K, k_max)  # curves shorter than Top-50: what they hold
    columns = ["method", *(f"Top-{k}" for k in ks), f"vs probe (Top-{head}, paired)", *groups, "held-out accuracy"]
    has_probe = PROBE in outcomes.ranks
    probe_side = side(url, results, outcomes, PROBE) if has_probe else None
    probe_accuracy = None if results.probe is None else results.probe.mean_accuracy
    rows = []
    for run in results.runs:
        if has_probe and run.method != PROBE:
            c = compare(probe_side, side(url, results, outcomes, run.method), resamples, ks=(head,))
            f = c.figure(head)
            vs = f"{signed(f.difference)} [{signed(f.low)}, {signed(f.high)}]"
        else:
            vs = None
        per_group = [cell(run.groups[g], head) if g in run.groups else None for g in groups]
        # the probe's rankings rank by its classifiers; every other run by the model's (its own, or fused with them)
        mean = probe_accuracy if run.method.startswith(PROBE) else results.model.mean_accuracy
        held_out = None if mean is None else f"{mean:.3f}"
        rows.append([run.method, *(cell(run.average, k) for k in ks), vs, *per_group, held_out])
    return columns, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", help="a results.json with outcomes.parquet beside it")
    parser.add_argument("--name", required=True, help="the JSON's name under bench/results/")
    parser.add_argument("--title", default="Retrieval quality with 95% intervals (bootstrap over queries)")
    parser.add_argument("--note", action="append", default=[], help="a sentence under the table (repeatable)")
    parser.add_argument("--resamples", type=int, default=1000)
    args, _ = parser.parse_known_args()
    add_record_options(parser, args.name)
    args = parser.parse_args()
    results = read_results(Path(args.results).read_bytes(), args.results)
    columns, rows = rows_of(args.results, results, args.resamples)
    d = results.dataset
    about = (
        f"{d.queries:,} queries, {d.gallery:,} gallery images, {d.manipulations:,} manipulations; Top-K averaged over "
        f"the attributes, the attribute columns Top-{K}; ±: half the 95% interval of a bootstrap over queries "
        f"({results.bootstrap.resamples if results.bootstrap else '–'} resamples, every manipulation of a drawn query "
        f"together); vs probe: the run's Top-{K} minus the probe's with the paired interval (both resampled with the "
        f"same draws, {args.resamples:,} resamples); held-out accuracy: the mean accuracy on the query and gallery "
        "images of the classifiers a run ranks with (the model's; the probe's for the probe rows)."
    )
    for line in [*(f"  {' | '.join(str(c) for c in r)}" for r in rows)]:
        print(line)
    write_result(
        args, args.name, args.title, [Table("main", columns, rows)], notes=[*args.note, provenance(results), about]
    )


def provenance(results: Results) -> str:
    """Where the figures come from, as results.json records it: the model, its training, the evaluation."""
    m, t = results.model, results.training or {}
    seconds = ", ".join(f"{stage} {s:,.0f} s" for stage, s in (t.get("seconds") or {}).items())
    trained = f"; trained by fsnet train ({seconds})" if seconds else ""
    return (
        f"The model: {m.variant}, {m.backbone} at {m.image_size} px{trained}; evaluated by fsnet "
        f"{results.fsnet_version} on {results.dataset.catalog}, {results.created}."
    )


if __name__ == "__main__":
    main()

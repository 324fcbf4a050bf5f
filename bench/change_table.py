"""What each ranking's Top-K lists get right, over several evaluations: the changed attribute's new value
(NDCG@K of the manipulated attribute, relevance 1 for an image with the new value, as ADDE reports it) and the
whole target vector (NDCG@K graded by the share of target attributes an image has), beside Top-K, each with
half its interval; the columns after them are each figure minus the probe's in the same evaluation. It shows
whether a ranking misses the change it was asked for or the attributes it was asked to keep.

    python bench/change_table.py --name fps_change \\
        --run 'fashion-product-small=runs/fps/eval/results.json' \\
        --run 'a smaller catalog=runs/fps-small/eval/results.json'

Read from results.json alone (fsnet evaluate writes every curve and its bootstrap interval).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eval.report import PROBE, at, band_at, banded
from eval.results import Results, read_results

try:  # run as a script: bench/ is on sys.path
    from quality_table import signed
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.change_table
    from bench.quality_table import signed
    from bench.record import Table, add_record_options, write_result

K = 20
METHODS = ("full", "full+logp", "attr_logp", PROBE)
CURVES = (("top_k", "Top-{k}"), ("ndcg_attribute", "NDCG@{k}, changed attribute"), ("ndcg_full", "NDCG@{k}, target"))


def rows_of(label: str, results: Results, methods: tuple[str, ...], k: int) -> list[list]:
    """One row per method the evaluation ranked (in ``methods``' order): its curves at K and minus the probe's."""
    runs = {r.method: r for r in results.runs}
    probe = runs.get(PROBE)
    rows = []
    for method in (m for m in methods if m in runs):
        curves = runs[method].average
        cells = [banded(at(getattr(curves, key), k), band_at(curves, key, k)) for key, _ in CURVES]
        if probe is None or method == PROBE:
            versus = [None] * len(CURVES)
        else:
            versus = [signed(at(getattr(curves, key), k) - at(getattr(probe.average, key), k)) for key, _ in CURVES]
        rows.append([label, method, *cells, *versus])
    return rows


def labelled(text: str) -> tuple[str, str]:
    """'LABEL=PATH' -> (label, path); a path alone is its own label."""
    label, sep, path = text.partition("=")
    return (label, path) if sep else (text, text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", action="append", required=True, help="LABEL=results.json (repeatable)")
    parser.add_argument("--name", required=True, help="the JSON's name under bench/results/")
    parser.add_argument("--title", default="What the Top-K lists get right: the changed attribute and the target")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated runs of each evaluation")
    parser.add_argument("--k", type=int, default=K)
    parser.add_argument("--note", action="append", default=[], help="a sentence under the table (repeatable)")
    args, _ = parser.parse_known_args()
    add_record_options(parser, args.name)
    args = parser.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    names = [c.format(k=args.k) for _, c in CURVES]
    columns = ["evaluation", "method", *names, *(f"{n} minus the probe's" for n in names)]
    rows, sources = [], []
    for label, path in map(labelled, args.run):
        results = read_results(Path(path).read_bytes(), path)
        rows += rows_of(label, results, methods, args.k)
        d = results.dataset
        sources.append(
            f"{label}: {d.queries:,} queries, {d.gallery:,} gallery images, {d.manipulations:,} manipulations "
            f"({results.model.variant}, {results.model.backbone} at {results.model.image_size} px, evaluated "
            f"{results.created})."
        )
    for row in rows:
        print("  " + " | ".join("–" if c is None else str(c) for c in row))
    about = (
        f"Averaged over the attributes changed; ±: half the 95% interval of the bootstrap over queries that fsnet "
        f"evaluate records; NDCG@{args.k}, changed attribute: relevance 1 for an image with the new value; "
        f"NDCG@{args.k}, target: relevance the share of the target's attributes an image has. The differences are "
        "plain differences of the averages (not paired intervals)."
    )
    write_result(args, args.name, args.title, [Table("main", columns, rows)], notes=[*args.note, *sources, about])


if __name__ == "__main__":
    main()

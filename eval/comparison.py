"""One ranking against another: the difference in Top-K per group and averaged over groups, with a bootstrap
interval over queries and the share of resamples where it is <= 0 (eval/bootstrap.py).

Two runs of one evaluation, or of two evaluations of the same protocol (equal ``dataset.fingerprint``: the same
queries, gallery and manipulations), are compared *paired*: manipulation by manipulation, with the same draws of
the queries on both sides. ``fsnet compare`` refuses anything else, naming what differs. The re-index gate may
compare evaluations of different protocols (the catalog changed between two versions); ``unpaired=True`` then
resamples each side's queries independently and says so.

Both sides' figures come from their outcomes.parquet (each manipulation's first-hit rank, eval/outcomes.py), so a
comparison needs no model, index or catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from eval.bootstrap import RESAMPLES, Interval, QueryBootstrap, paired_difference, query_rows, unpaired_difference
from eval.outcomes import OUTCOMES_FILE, Outcomes, read_outcomes
from eval.report import FUSED_SUFFIX
from eval.results import RESULTS_FILE, Results, load_results
from fsnet.errors import FsnetError
from fsnet.storage import Storage, join, parent

KS = (1, 10, 20, 50)  # the Top-K a comparison reports (those within k_max)
AVERAGE = "average"


class ComparisonError(FsnetError):
    """Two evaluations that cannot be compared: other protocols, a missing run or file."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: an evaluation's results.json, its outcomes and the run compared."""

    url: str
    results: Results
    outcomes: Outcomes
    method: str


def best_ranking(results: Results) -> str:
    """The model's best-informed ranking: its ``+logp`` run when it has one (what ``fsnet search`` ranks by)."""
    return best_of(results.model_run.method, [r.method for r in results.runs])


def best_of(model: str, methods: list[str]) -> str:
    """``<model>+logp`` when ``methods`` has it, else ``model``."""
    fused = f"{model}{FUSED_SUFFIX}"
    return fused if fused in methods else model


def side(url: str, results: Results, outcomes: Outcomes, method: str | None) -> Side:
    """``method`` of that evaluation (None: best_ranking), checked against its outcomes."""
    method = method or best_ranking(results)
    if method not in outcomes.ranks:
        runs = ", ".join(outcomes.ranks)
        raise ComparisonError(f"{url}: no run '{method}' (runs: {runs})")
    return Side(url, results, outcomes, method)


def results_url(storage: Storage, url: str) -> str:
    """A results.json's URL, or the folder holding one."""
    return url if url.endswith(".json") or not storage.exists(join(url, RESULTS_FILE)) else join(url, RESULTS_FILE)


def load_side(storage: Storage, url: str, method: str | None) -> Side:
    """results.json (or its folder) and its outcomes.parquet, the run ``method`` of it (None: the model's best)."""
    url = results_url(storage, url)
    results = load_results(storage, url)
    outcomes_url = join(parent(url), OUTCOMES_FILE)
    if not storage.exists(outcomes_url):
        raise ComparisonError(
            f"{outcomes_url}: no per-manipulation outcomes beside {url} (written by an fsnet before compare "
            "existed? evaluate again)"
        )
    outcomes = read_outcomes(storage.read_bytes(outcomes_url), outcomes_url)
    if outcomes.evaluation != results.created or len(outcomes.query) != results.dataset.manipulations:
        raise ComparisonError(
            f"{outcomes_url} belongs to another evaluation than {url} (written {outcomes.evaluation}, results "
            f"{results.created}: an evaluation stopped between the two files?); evaluate again"
        )
    return side(url, results, outcomes, method)


def protocol_difference(a: Results, b: Results) -> str | None:
    """What makes two evaluations' manipulations differ, in words; None when they are the same protocol."""
    fa, fb = a.dataset.fingerprint, b.dataset.fingerprint
    if fa is None or fb is None:
        return "one of them was written before fsnet recorded the protocol's fingerprint (evaluate it again)"
    if a.dataset.catalog != b.dataset.catalog and fa != fb:
        what = f"other catalogs ({a.dataset.catalog} and {b.dataset.catalog})"
    else:
        what = "other protocols"
    if fa.queries != fb.queries:
        return f"{what}: other query images ({a.dataset.queries:,} and {b.dataset.queries:,}; another split?)"
    if fa.gallery != fb.gallery:
        return f"{what}: other gallery images ({a.dataset.gallery:,} and {b.dataset.gallery:,})"
    if a.dataset.at_once != b.dataset.at_once or a.dataset.protocol != b.dataset.protocol:
        return (
            f"{what}: eval.at_once {a.dataset.at_once} and {b.dataset.at_once}, protocol {a.dataset.protocol} and "
            f"{b.dataset.protocol}"
        )
    if fa.manipulations != fb.manipulations:
        return f"{what}: other manipulations ({a.dataset.manipulations:,} and {b.dataset.manipulations:,})"
    return None


class Figure(BaseModel):
    """One group's (or the average's) Top-K on both sides and their difference."""

    model_config = ConfigDict(extra="forbid")

    base: float
    new: float
    difference: float
    low: float
    high: float
    share_not_above: float  # resamples where the difference is <= 0


class Comparison(BaseModel):
    """compare.json: ``new`` minus ``base`` at each K, per group and averaged over groups."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    base: dict[str, str]  # results, method
    new: dict[str, str]
    pairing: Literal["paired", "unpaired"]
    queries: list[int]  # base's, new's (the queries with a manipulation)
    manipulations: list[int]
    resamples: int
    confidence: float
    seed: int
    ks: list[int]
    top_k: dict[str, dict[str, Figure]]  # "top_20" -> group name or "average" -> Figure

    def figure(self, k: int, group: str = AVERAGE) -> Figure:
        return self.top_k[f"top_{k}"][group]


def compare(
    base: Side,
    new: Side,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    unpaired: bool = False,
    ks: tuple[int, ...] = KS,
) -> Comparison:
    """``new`` minus ``base`` in Top-K at each of ``ks`` within both k_max. Paired unless ``unpaired``; a paired
    comparison of different protocols is a ComparisonError naming what differs."""
    if not unpaired and base.results is not new.results:
        different = protocol_difference(base.results, new.results)
        if different:
            raise ComparisonError(f"{base.url} and {new.url} evaluate {different}: not comparable")
    ks = tuple(k for k in ks if k <= min(base.outcomes.k_max, new.outcomes.k_max))
    if not ks:
        raise ComparisonError(f"k_max {min(base.outcomes.k_max, new.outcomes.k_max)} is below every K of {list(KS)}")
    names = list(dict.fromkeys([*base.outcomes.groups, *new.outcomes.groups]))
    out: dict[str, dict[str, Figure]] = {}
    if unpaired:
        for k in ks:
            out[f"top_{k}"] = _unpaired(base, new, names, k, resamples, seed, confidence)
    else:
        q, rows = query_rows(base.outcomes.query)
        boot = QueryBootstrap.draw(q, resamples, seed, confidence)
        group = base.outcomes.group_index(names)
        for k in ks:
            out[f"top_{k}"] = _paired(boot, base, new, rows, group, names, k)
    return Comparison(
        base={"results": base.url, "method": base.method},
        new={"results": new.url, "method": new.method},
        pairing="unpaired" if unpaired else "paired",
        queries=[query_rows(s.outcomes.query)[0] for s in (base, new)],
        manipulations=[len(s.outcomes.query) for s in (base, new)],
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        ks=list(ks),
        top_k=out,
    )


def _figure(base: float, new: float, interval: Interval) -> Figure:
    return Figure(
        base=base,
        new=new,
        difference=interval.value,
        low=interval.low,
        high=interval.high,
        share_not_above=interval.share_not_above,
    )


def _group_means(hits: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """(G,) each group's mean (NaN for a group without manipulations)."""
    count = np.bincount(group, minlength=groups)
    sums = np.bincount(group, weights=hits, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / count


def _paired(
    boot: QueryBootstrap, base: Side, new: Side, rows: np.ndarray, group: np.ndarray, names: list[str], k: int
) -> dict[str, Figure]:
    old_hits, new_hits = base.outcomes.hits(base.method, k), new.outcomes.hits(new.method, k)
    total, per_group = paired_difference(boot, new_hits, old_hits, rows, group, len(names))
    old_means, new_means = _group_means(old_hits, group, len(names)), _group_means(new_hits, group, len(names))
    present = ~np.isnan(old_means)
    figures = {AVERAGE: _figure(float(old_means[present].mean()), float(new_means[present].mean()), total)}
    for g, name in enumerate(names):
        if per_group[g] is not None:
            figures[name] = _figure(float(old_means[g]), float(new_means[g]), per_group[g])
    return figures


def _unpaired(
    base: Side, new: Side, names: list[str], k: int, resamples: int, seed: int, confidence: float
) -> dict[str, Figure]:
    """The average over groups both sides have (a group only one side has is left out of both)."""
    sides = []
    for s in (new, base):
        group = s.outcomes.group_index(names)
        sides.append((s.outcomes.hits(s.method, k), s.outcomes.query, group))
    shared = [g for g in range(len(names)) if all((grp == g).any() for _, _, grp in sides)]
    if not shared:
        raise ComparisonError(f"{base.url} and {new.url} share no group of manipulations")
    figures = {}
    keep = [np.isin(grp, shared) for _, _, grp in sides]
    trimmed = [tuple(x[m] for x in s) for s, m in zip(sides, keep)]
    total = unpaired_difference(trimmed[0], trimmed[1], len(names), resamples, seed, confidence)
    means = [_group_means(h, grp, len(names)) for h, _, grp in sides]  # new, base
    figures[AVERAGE] = _figure(float(means[1][shared].mean()), float(means[0][shared].mean()), total)
    for g in shared:
        mine = [tuple(x[grp == g] for x in (h, q, grp)) for h, q, grp in sides]
        interval = unpaired_difference(mine[0], mine[1], len(names), resamples, seed, confidence)
        figures[names[g]] = _figure(float(means[1][g]), float(means[0][g]), interval)
    return figures


def headline_k(c: Comparison) -> int:
    """The K a comparison is summed up at: 20 (the paper's Table 1), or the largest one compared."""
    return 20 if 20 in c.ks else c.ks[-1]


def signed(x: float) -> str:
    """+0.012; 0 as +0.000, never -0.000."""
    return f"{round(x, 3) + 0.0:+.3f}"


def difference_text(f: Figure) -> str:
    """``+0.012 [-0.003, +0.027]``: the difference and its interval."""
    return f"{signed(f.difference)} [{signed(f.low)}, {signed(f.high)}]"


def summary_line(c: Comparison) -> str:
    """The average at headline_k in one sentence."""
    k = headline_k(c)
    f = c.figure(k)
    return (
        f"Top-{k}: {c.new['method']} {f.new:.3f} against {c.base['method']} {f.base:.3f}: {signed(f.difference)}, "
        f"{c.confidence:.0%} interval {signed(f.low)} to {signed(f.high)}; {f.share_not_above:.1%} of {c.resamples:,} "
        f"resamples at or below 0 ({c.pairing} bootstrap over {c.queries[0]:,} queries)"
    )

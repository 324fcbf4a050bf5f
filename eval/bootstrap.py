"""Intervals for the protocol's figures by a bootstrap over queries.

A figure (a Top-K accuracy, an NDCG) is a mean per group of manipulations (the attribute changed), then a mean
over groups. The manipulations of one query share its image, so they are not independent draws: a resample draws
Q queries with replacement and takes every manipulation of a drawn query with it (a query drawn twice counts
twice). For each resample the figures are recomputed with the manipulations weighted by their query's count; the
interval is the central ``confidence`` share of the resampled figures (the percentile interval: 2.5th and 97.5th
percentiles at 0.95).

Vectorised: per (query, group) the sums of a manipulation value, (Q, G x k); every resample's group sums are one
matrix product with the draw counts (B, Q). Seconds for 1,000 resamples of 25,000 manipulations.

Two rankings of the same manipulations are compared *paired*: the per-manipulation differences are resampled with
the same draws, so what the two share (a hard query, a rare target) cancels. Two evaluations of different
manipulations can only be compared *unpaired*: each side resampled independently."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class QueryBootstrap:
    """B resamples of Q queries: ``weights`` (B, Q) how often each query is drawn in each."""

    weights: np.ndarray  # (B, Q) float32 draw counts
    confidence: float
    seed: int

    @classmethod
    def draw(
        cls, queries: int, resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
    ) -> "QueryBootstrap":
        if queries < 1:
            raise ValueError("a bootstrap over queries needs at least one query")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence {confidence}: between 0 and 1")
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(queries, np.full(queries, 1.0 / queries), size=resamples)  # (B, Q)
        return cls(counts.astype(np.float32), confidence, seed)

    @property
    def resamples(self) -> int:
        return self.weights.shape[0]

    def group_means(self, values: np.ndarray, query: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
        """values (M, k) per manipulation, query (M,) its query's row (0..Q-1), group (M,) in 0..groups-1 ->
        (B, groups, k) each resample's mean per group (NaN where a resample drew no manipulation of a group)."""
        q = self.weights.shape[1]
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # (M, k)
        k = values.shape[1]
        key = np.asarray(query, dtype=np.int64) * groups + np.asarray(group, dtype=np.int64)  # (M,)
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        sums = np.zeros((q * groups, k), dtype=np.float32)  # (Q x G, k) per (query, group)
        counts = np.zeros(q * groups, dtype=np.float32)
        if len(keys):
            sums[keys] = np.add.reduceat(values[order], starts, axis=0)
            counts[keys] = np.diff(np.append(starts, len(order)))
        drawn_sums = self.weights @ sums.reshape(q, groups * k)  # (B, G x k)
        drawn_counts = self.weights @ counts.reshape(q, groups)  # (B, G)
        with np.errstate(invalid="ignore", divide="ignore"):
            return drawn_sums.reshape(-1, groups, k) / drawn_counts[:, :, None]

    def averages(self, values: np.ndarray, query: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
        """(B, k) each resample's figure averaged over groups (each group once, as the point figure is)."""
        means = self.group_means(values, query, group, groups)
        present = np.bincount(np.asarray(group, dtype=np.int64), minlength=groups) > 0
        with np.errstate(invalid="ignore"):
            return np.nanmean(means[:, present], axis=1) if present.any() else np.full(means[:, 0].shape, np.nan)

    def interval(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, ...) resampled figures -> (low, high), each (...): the central ``confidence`` share."""
        tail = (1 - self.confidence) / 2
        low, high = np.nanquantile(samples, [tail, 1 - tail], axis=0)
        return low, high


def query_rows(query: np.ndarray) -> tuple[int, np.ndarray]:
    """(M,) each manipulation's query (any numbering) -> (Q, (M,) rows 0..Q-1): the queries that have a
    manipulation, the ones a bootstrap draws from."""
    unique, rows = np.unique(np.asarray(query), return_inverse=True)
    return len(unique), rows.reshape(-1)


@dataclass(frozen=True)
class Interval:
    """A figure, its interval, and the share of resamples at or below zero (for a difference)."""

    value: float
    low: float
    high: float
    share_not_above: float  # resamples <= 0


def paired_difference(
    boot: QueryBootstrap,
    new: np.ndarray,
    old: np.ndarray,
    query: np.ndarray,
    group: np.ndarray,
    groups: int,
) -> tuple[Interval, list[Interval | None]]:
    """new, old (M,) one value per manipulation of the *same* manipulations (hit at K: 0 or 1) -> the difference
    of the figure averaged over groups, and per group (None: the group has no manipulation), with intervals from
    resampling queries with the same draws on both sides."""
    diff = (np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64))[:, None]  # (M, 1)
    means = boot.group_means(diff, query, group, groups)[:, :, 0]  # (B, G)
    count = np.bincount(np.asarray(group, dtype=np.int64), minlength=groups)
    point = np.array([diff[group == g, 0].mean() if count[g] else np.nan for g in range(groups)])  # (G,)
    with np.errstate(invalid="ignore"):
        average = np.nanmean(means[:, count > 0], axis=1)  # (B,)
    per_group = [_interval(boot, float(point[g]), means[:, g]) if count[g] else None for g in range(groups)]
    return _interval(boot, float(np.mean(point[count > 0])), average), per_group


def unpaired_difference(
    new: tuple[np.ndarray, np.ndarray, np.ndarray],
    old: tuple[np.ndarray, np.ndarray, np.ndarray],
    groups: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """new, old: (values (M,), query (M,), group (M,)) of two evaluations of *different* manipulations (another
    gallery, other queries) -> the difference of the figure averaged over groups, each side's queries resampled
    independently. Groups are matched by index: pass the same group numbering for both."""
    sides = []
    for i, (values, query, group) in enumerate((new, old)):
        q, rows = query_rows(query)
        boot = QueryBootstrap.draw(q, resamples, seed + i, confidence)
        sides.append((boot, boot.averages(np.asarray(values)[:, None], rows, group, groups)[:, 0]))
    point = _average(*new, groups) - _average(*old, groups)
    return _interval(sides[0][0], point, sides[0][1] - sides[1][1])


def _average(values: np.ndarray, query: np.ndarray, group: np.ndarray, groups: int) -> float:
    present = [g for g in range(groups) if (group == g).any()]
    return float(np.mean([np.asarray(values, dtype=np.float64)[group == g].mean() for g in present]))


def _interval(boot: QueryBootstrap, point: float, samples: np.ndarray) -> Interval:
    low, high = boot.interval(samples)
    return Interval(point, float(low), float(high), float(np.mean(samples <= 0)))

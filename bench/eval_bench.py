"""Exact Top-K of every manipulation: the factorized evaluator against the faiss brute-force reference, on the
Shopping100k-size protocol with random embeddings, in one run: time, peak memory, identical hits.

    python bench/eval_bench.py [--queries 2000] [--gallery 18000] [--k 50] [--embed-dim 256] [--global-dim 256]

Labels: 12 attributes with Shopping100k's 16,17,19,14,10,15,2,11,16,7,9,15 values. Random labels would leave no
manipulation a target in the gallery, so images come in product families, as catalogs do: 300 random prototypes,
each image a prototype with every attribute redrawn with probability 0.15 (--families, --redraw).
Representations: s_a = mu_{a, value} + noise (unit Gaussians, so features cluster by value as a trained model's
do); the memory block is the mean of 30,000 training representations per value; lambda_a in [0.5, 2]; w_r a
random projection (A*D -> r), or none (F = [s_1, ..., s_A], the variants without global learning) with
--global-dim 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import numpy as np
import torch

from eval.linear_global import LinearGlobal
from eval.protocol import build_manipulations
from eval.topk import brute_force_topk, factorized_topk

NUM_VALUES = [16, 17, 19, 14, 10, 15, 2, 11, 16, 7, 9, 15]
NAMES = [f"attr{i}" for i in range(len(NUM_VALUES))]


class PeakRss:
    """Peak resident memory above the level at entry, sampled every 5 ms (torch and faiss allocate outside Python)."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self.done = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done = True
        self.thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self.done:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def labels(rng: np.random.Generator, prototypes: np.ndarray, n: int, redraw: float) -> np.ndarray:
    out = prototypes[rng.integers(0, len(prototypes), n)].copy()
    fresh = np.stack([rng.integers(0, v, n) for v in NUM_VALUES], 1)
    return np.where(rng.random(out.shape) < redraw, fresh, out)


def representations(rng: np.random.Generator, centres: list[np.ndarray], labels_: np.ndarray) -> np.ndarray:
    d = centres[0].shape[1]
    reps = rng.standard_normal((len(labels_), len(NUM_VALUES), d)).astype(np.float32)  # (n, A, D)
    for a, c in enumerate(centres):
        reps[:, a] += c[labels_[:, a]]
    return reps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=18000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--global-dim", type=int, default=256, help="r; 0: no w_r (F is the concatenation)")
    parser.add_argument("--families", type=int, default=300, help="product prototypes the labels are drawn around")
    parser.add_argument(
        "--redraw", type=float, default=0.15, help="probability that an image's attribute is redrawn at random"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    d, r = args.embed_dim, args.global_dim
    prototypes = np.stack([rng.integers(0, v, args.families) for v in NUM_VALUES], 1)
    query_labels, gallery_labels = (
        labels(rng, prototypes, args.queries, args.redraw),
        labels(rng, prototypes, args.gallery, args.redraw),
    )
    centres = [rng.standard_normal((v, d)).astype(np.float32) for v in NUM_VALUES]
    train_labels = labels(rng, prototypes, 30000, args.redraw)
    train = representations(rng, centres, train_labels)
    memory = np.concatenate(
        [np.stack([train[train_labels[:, a] == v, a].mean(0) for v in range(nv)]) for a, nv in enumerate(NUM_VALUES)]
    )
    a = len(NUM_VALUES)
    model = LinearGlobal(
        rng.uniform(0.5, 2.0, a),
        (rng.standard_normal((a, d, r)) / np.sqrt(a * d)) if r else None,
        memory.astype(np.float64),
        NUM_VALUES,
    )
    query_reps = representations(rng, centres, query_labels)
    gallery = model.global_of(representations(rng, centres, gallery_labels).astype(np.float64)).astype(np.float32)
    del train

    t = time.perf_counter()
    manipulations = build_manipulations(query_labels, gallery_labels, NAMES, NUM_VALUES)
    protocol_s = time.perf_counter() - t
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} on "
        f"{torch.get_num_threads()} threads, "
        f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )
    print(
        f"protocol: {args.queries:,} queries, {args.gallery:,} gallery, {a} attributes ({sum(NUM_VALUES)} values), "
        f"{len(manipulations):,} manipulations ({len(manipulations) / args.queries:.1f} per query) in "
        f"{protocol_s:.2f} s; "
        f"D = {d}, r = {r or a * d}{'' if r else ' (no w_r)'}, K = {args.k}"
    )

    with PeakRss() as fast_mem:
        t = time.perf_counter()
        fast = factorized_topk(model, query_reps, gallery, manipulations, args.k)
        fast_s = time.perf_counter() - t
    with PeakRss() as slow_mem:
        t = time.perf_counter()
        slow = brute_force_topk(model, query_reps, gallery, manipulations, args.k)
        slow_s = time.perf_counter() - t
    same = bool((fast.positions == slow.positions).all())
    print(
        f"  factorized        {fast_s:8.2f} s  {len(manipulations) / fast_s:10,.0f} manipulations/s  "
        f"peak +{fast_mem.mib:7.0f} MiB  (rows the bound left to a full scan: {fast.full_rows:,}; "
        f"rows re-ranked over the whole gallery: {fast.exact_rows:,})"
    )
    print(
        f"  faiss brute force {slow_s:8.2f} s  {len(manipulations) / slow_s:10,.0f} manipulations/s  "
        f"peak +{slow_mem.mib:7.0f} MiB  (rows re-ranked over the whole gallery: {slow.exact_rows:,})"
    )
    print(
        f"  speed-up {slow_s / fast_s:.1f}x; identical Top-{args.k} lists for all {len(manipulations):,} "
        f"manipulations: {same}"
    )


if __name__ == "__main__":
    main()

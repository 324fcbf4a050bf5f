"""The evaluation's ranking scorers with numpy's BLAS on its default threads against one BLAS thread, side by side
in one run: ``fsnet evaluate`` ranks under one (jobs/evaluate.py), because OpenBLAS's threads spin for a while after
each product, on the cores torch's next product needs, and the scorers alternate numpy's small float64 products
(the manipulated F', eval/slot_algebra.py) with torch's large float32 ones block by block. The same lists both
ways. fashion-product-small's protocol sizes with random representations and softmax outputs: 2,000 queries, 18,000
gallery images, 7 attributes of its value counts, about 41,000 manipulations of one attribute each; torch on its
default threads (one per core). Rounds alternate between the ways; each figure is the best round's.

    python bench/blas_bench.py [--queries 2000] [--gallery 18000] [--rounds 2] [--out PATH]

Writes its figures to bench/results/blas_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from eval.attr_logp import attr_logp_topk
from eval.attribute_only import attribute_only_topk
from eval.fused_logp import FusedLogp
from eval.linear_global import LinearGlobal
from eval.protocol import Manipulations

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA  # fashion-product-small's 7 attributes
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.blas_bench
    from bench.model_bench import SCHEMA
    from bench.record import Table, add_record_options, write_result

EMBED_DIM, K = 256, 50  # model.embed_dim and the global representation's width; eval.k_max


def softmax_outputs(rng: np.random.Generator, n: int, num_values: list[int]) -> np.ndarray:
    """(n, C) a softmax per attribute over random logits, concatenated as the index stores them."""
    out = []
    for v in num_values:
        z = rng.normal(scale=3.0, size=(n, v))
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out.append(z / z.sum(axis=1, keepdims=True))
    return np.concatenate(out, axis=1).astype(np.float32)


def scorers(queries: int, gallery: int) -> tuple[dict[str, Callable[[], np.ndarray]], int]:
    """The three scorers that mix numpy and torch, on one random protocol; (scorers, manipulations)."""
    rng = np.random.default_rng(0)
    num_values, a = list(SCHEMA.num_values), len(SCHEMA.num_values)
    labels = np.stack([rng.integers(0, v, queries) for v in num_values], axis=1)  # (Q, A)
    per_query = 20  # manipulations per query, about fashion-product-small's 41,197 / 2,000
    query = np.repeat(np.arange(queries), per_query)  # grouped by query, as the protocol gives them
    change = np.full((len(query), a), -1, np.int64)
    changed = rng.integers(0, a, len(query))
    change[np.arange(len(query)), changed] = [rng.integers(0, num_values[c]) for c in changed]
    target = np.where(change >= 0, change, labels[query])
    m = Manipulations(query=query, change=change, target=target, group=changed, groups=list(SCHEMA.names))
    algebra = LinearGlobal(
        lambdas=rng.uniform(0.5, 1.5, a),
        blocks=rng.normal(scale=EMBED_DIM**-0.5, size=(a, EMBED_DIM, EMBED_DIM)),
        memory=rng.normal(size=(sum(num_values), EMBED_DIM)),
        num_values=num_values,
    )
    reps = rng.normal(size=(queries, a, EMBED_DIM)).astype(np.float32)  # (Q, A, D)
    gallery_reps = rng.normal(size=(gallery, a, EMBED_DIM))
    gallery_global = algebra.global_of(gallery_reps).astype(np.float32)  # (N, r)
    query_p, gallery_p = softmax_outputs(rng, queries, num_values), softmax_outputs(rng, gallery, num_values)
    predicted = np.stack([rng.integers(0, v, gallery) for v in num_values], axis=1)
    fused = FusedLogp(algebra, reps, labels, query_p, gallery_global, gallery_p, num_values)
    query_global = algebra.global_of(reps.astype(np.float64))
    return {
        "full+logp": lambda: fused.topk(m, K, weight=1.0),
        "attr_logp": lambda: attr_logp_topk(query_p, gallery_p, num_values, m, K),
        "attribute_only": lambda: attribute_only_topk(query_global, gallery_global, predicted, num_values, m, K),
    }, len(m)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=18000)
    parser.add_argument("--rounds", type=int, default=2)
    add_record_options(parser, "blas_bench")
    args = parser.parse_args()
    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    default = blas[0]["num_threads"] if blas else None
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} on "
        f"{torch.get_num_threads()} threads, numpy's BLAS {blas[0]['internal_api'] if blas else '?'} on {default}"
    )
    ways, count = scorers(args.queries, args.gallery)
    rows = []
    print(f"\n{'scorer':16s} {'default':>10s} {'one BLAS':>10s} {'':3s} {'ratio':>6s}")
    for name, rank in ways.items():
        best, lists = {"default": float("inf"), "one": float("inf")}, {}
        for _ in range(args.rounds):
            for way in best:
                with threadpool_limits(1 if way == "one" else None, user_api="blas"):
                    start = time.perf_counter()
                    lists[way] = rank()
                    best[way] = min(best[way], time.perf_counter() - start)
        same = bool(np.array_equal(lists["default"], lists["one"]))
        ratio = best["default"] / best["one"]
        print(f"{name:16s} {best['default']:9.2f}s {best['one']:9.2f}s {'':3s} {ratio:5.2f}x  same lists: {same}")
        rows.append([name, round(best["default"], 2), round(best["one"], 2), f"{ratio:.2f}×", "yes" if same else "no"])
    write_result(
        args,
        "blas_bench",
        "The evaluation's scorers: numpy's BLAS on its default threads against one BLAS thread",
        [Table("main", ["scorer", "default threads (s)", "one BLAS thread (s)", "faster by", "same lists"], rows)],
        notes=[
            f"{args.queries:,} queries, {args.gallery:,} gallery images, {count:,} manipulations of one attribute "
            f"each over fashion-product-small's 7 attributes; random representations ({EMBED_DIM} wide, a random "
            f"learned w_r) and softmax outputs; Top-{K}. torch on {torch.get_num_threads()} threads; numpy's BLAS on "
            f"{default} by default. The best of {args.rounds} alternating rounds."
        ],
    )


if __name__ == "__main__":
    main()

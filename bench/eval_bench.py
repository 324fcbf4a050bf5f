"""Exact Top-K of every manipulation, on the Shopping100k-size protocol with random embeddings, in one run on the
same threads: the threshold evaluator (eval/threshold_topk.py), the faiss brute-force reference
(eval/brute_force.py), and the floor: one plain matrix product of the size the factorized
form cannot avoid, (Q + P + C) x N x w (P: the (query, changed attribute) products the protocol needs, at most
Q * A; C: the memory rows; w = min(D, r)). Time, ratios, peak memory, identical lists.

    python bench/eval_bench.py [--queries 2000] [--gallery 18000] [--k 50] [--embed-dim 256] [--global-dim 256]
                               [--labels sparse,dense]   # a row per label setting (both by default)
    python bench/eval_bench.py --small            # 300 queries, 3,000 gallery: a quick run
    python bench/eval_bench.py --families 30 --redraw 0.05   # one setting of your own
    OPENBLAS_NUM_THREADS=1 python bench/eval_bench.py --threads 1   # on cores other work shares (see below)

Threads: every timing runs on the same torch / faiss threads. On cores that other processes keep busy, parallel
regions wait for a descheduled thread at every barrier, which costs each small operation milliseconds; one thread
each then gives the figures the arithmetic explains.

The protocol's data: bench/eval_protocol.py (Shopping100k's 12 attributes, labels in product families, representations
that cluster by value). Sparse: 300 families, 15% redrawn (~4 manipulations per query); dense: 30 families, 5% (~62);
--global-dim 0: no w_r (F = [s_1, ..., s_A], the variants without global learning).

Writes its figures to bench/results/eval_bench.json (bench/record.py; --out PATH, --no-record: print only): a row
per label setting, with the path fsnet evaluate takes for that protocol (eval/threshold_topk.py exact_topk).
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import faiss
import numpy as np
import torch

from eval.brute_force import brute_force_topk
from eval.protocol import Manipulations
from eval.threshold_topk import cheaper_path, threshold_topk

try:  # run as a script: bench/ is on sys.path
    from eval_protocol import NUM_VALUES, SETTINGS, protocol_data
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.eval_bench
    from bench.eval_protocol import NUM_VALUES, SETTINGS, protocol_data
    from bench.record import Table, add_record_options, write_result


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=18000)
    parser.add_argument("--small", action="store_true", help="300 queries and 3,000 gallery images: a quick run")
    parser.add_argument("--query-chunk", type=int, default=256, help="eval.query_chunk: bounds the evaluators' memory")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and faiss threads (numpy's BLAS: OPENBLAS_NUM_THREADS)"
    )
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--global-dim", type=int, default=256, help="r; 0: no w_r (F is the concatenation)")
    parser.add_argument(
        "--labels",
        default="sparse,dense",
        help="label settings, each a row: sparse (300 families, 15%% redrawn), dense (30 families, 5%%)",
    )
    parser.add_argument("--families", type=int, default=None, help="one setting of your own: product prototypes")
    parser.add_argument("--redraw", type=float, default=None, help="... and the probability an attribute is redrawn")
    add_record_options(parser, "eval_bench")
    args = parser.parse_args()
    if args.small:
        args.queries, args.gallery = 300, 3000
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch "
        f"{torch.__version__} on {torch.get_num_threads()} threads, faiss on {faiss.omp_get_max_threads()}, "
        f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )
    if args.families is not None or args.redraw is not None:
        settings = [(args.families or 300, 0.15 if args.redraw is None else args.redraw)]
    else:
        settings = [SETTINGS[name.strip()] for name in args.labels.split(",")]
    rows, identical = [], True
    for families, redraw in settings:
        row, same = measure(args, families, redraw)
        rows.append(row)
        identical = identical and same
    columns = ["labels", "manipulations (per query)", "threads", "threshold (new)"]
    columns += ["faiss brute force", "floor (one product)", "new vs faiss", "new / floor"]
    columns += ["evaluate's path", "evaluate vs faiss", "peak memory new / faiss"]
    d, r = args.embed_dim, args.global_dim
    write_result(
        args,
        "eval_bench",
        "The threshold evaluator against faiss brute force and the floor; the path fsnet "
        "evaluate takes for each protocol",
        [Table("main", columns, rows)],
        notes=[
            f"{args.queries:,} queries × {args.gallery:,} gallery images, {len(NUM_VALUES)} attributes, D = {d}, "
            f"r = {r or len(NUM_VALUES) * d}{'' if r else ' (no w_r)'}, K = {args.k}; identical Top-{args.k} lists "
            f"to faiss for every manipulation: {'yes' if identical else 'NO'}. Evaluate's path: exact_topk's choice "
            "(eval/threshold_topk.py), faiss brute force where the manipulations are fewer than the threshold "
            "path's gallery-wide rows."
        ],
    )


def measure(args: argparse.Namespace, families: int, redraw: float) -> tuple[list, bool]:
    """One label setting: the protocol, the floor, each evaluator timed; (the table's row, identical lists)."""
    d, r = args.embed_dim, args.global_dim
    data = protocol_data(args.queries, args.gallery, families, redraw, d, r)
    model, query_reps, gallery = data.model, data.query_reps, data.gallery
    a = len(NUM_VALUES)

    t = time.perf_counter()
    manipulations = data.manipulations()
    protocol_s = time.perf_counter() - t
    print(
        f"protocol: {args.queries:,} queries, {args.gallery:,} gallery, {a} attributes ({sum(NUM_VALUES)} values), "
        f"{len(manipulations):,} manipulations ({len(manipulations) / args.queries:.1f} per query) in "
        f"{protocol_s:.2f} s; "
        f"D = {d}, r = {r or a * d}{'' if r else ' (no w_r)'}, K = {args.k}"
    )

    w = min(d, r) if r else d  # the width of a (query, attribute) product: D-wide slots, or r where r < D
    pairs = needed_products(manipulations)
    floor_s = matrix_floor(args.queries + pairs + len(model.memory), w, args.gallery)
    print(
        f"  floor: one matrix product ({args.queries:,} + {pairs:,} + {len(model.memory)} rows, {w} wide) x "
        f"{args.gallery:,} gallery, float32 in blocks of {FLOOR_ROWS:,} rows: {floor_s:.2f} s "
        f"(Q + P + C rows; P = the (query, attribute) products needed, Q * A = {args.queries * a:,})"
    )
    timed = {}
    with PeakRss() as mem:
        t = time.perf_counter()
        top = threshold_topk(model, query_reps, gallery, manipulations, args.k, args.query_chunk)
        timed["threshold (new)"] = (time.perf_counter() - t, mem, top)
    with PeakRss() as mem:
        t = time.perf_counter()
        slow = brute_force_topk(model, query_reps, gallery, manipulations, args.k)
        timed["faiss brute force"] = (time.perf_counter() - t, mem, slow)
    for name, (seconds, mem, top) in timed.items():
        print(
            f"  {name:18} {seconds:8.2f} s  {len(manipulations) / seconds:10,.0f} manipulations/s  "
            f"peak +{mem.mib:7.0f} MiB  (rows scored over the whole gallery: {top.full_rows:,}; rows re-ranked over "
            f"the whole gallery: {top.exact_rows:,})"
        )
    new_s, slow_s = timed["threshold (new)"][0], timed["faiss brute force"][0]
    same = {name: bool((top.positions == slow.positions).all()) for name, (_, _, top) in timed.items()}
    line = f"  new: {slow_s / new_s:.2f}x faiss brute force, {new_s / floor_s:.2f}x the floor"
    print(line)
    print(
        f"  identical Top-{args.k} lists to faiss for all {len(manipulations):,} manipulations: "
        + ", ".join(f"{name} {ok}" for name, ok in same.items() if name != "faiss brute force")
    )
    path = cheaper_path(manipulations)
    chosen_s = new_s if path == "threshold" else slow_s
    print(f"  fsnet evaluate's path for this protocol: {path}, {slow_s / chosen_s:.2f}x faiss brute force")
    memory = [timed["threshold (new)"][1], timed["faiss brute force"][1]]
    row = [
        f"{families} families, {redraw:.0%} redrawn",
        f"{len(manipulations):,} ({len(manipulations) / args.queries:.1f})",
        str(torch.get_num_threads()),
        f"{new_s:.2f} s",
        f"{slow_s:.2f} s",
        f"{floor_s:.2f} s",
        f"{slow_s / new_s:.2f}×",
        f"{new_s / floor_s:.1f}×",
        path,
        f"{slow_s / chosen_s:.2f}×",
        " / ".join(f"+{m.mib:,.0f}" for m in memory) + " MiB",
    ]
    return row, all(same.values())


FLOOR_ROWS = 2048  # rows of one block of the floor's product (its output reuses one buffer: memory stays bounded)


def needed_products(manipulations: Manipulations) -> int:
    """P: the distinct (query, changed attribute) products u_qa . G the factorized form computes."""
    pairs = 0
    for g in np.unique(manipulations.group):
        rows = manipulations.group == g
        changed = int((manipulations.change[np.flatnonzero(rows)[0]] >= 0).sum())
        pairs += len(np.unique(manipulations.query[rows])) * changed
    return pairs


def matrix_floor(rows: int, width: int, n: int) -> float:
    """Seconds of one float32 product (rows, width) @ (width, n) on torch's threads, in blocks of FLOOR_ROWS rows
    into one output buffer (one warm-up block first)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(rows, width, generator=gen)
    b = torch.randn(width, n, generator=gen)
    out = torch.empty(min(FLOOR_ROWS, rows), n)
    torch.mm(a[: len(out)], b, out=out)
    t = time.perf_counter()
    for lo in range(0, rows, FLOOR_ROWS):
        block = a[lo : lo + FLOOR_ROWS]
        torch.mm(block, b, out=out[: len(block)])
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

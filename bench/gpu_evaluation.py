"""The GPU check's evaluation part: the evaluator ``fsnet evaluate`` runs (eval/threshold_topk.py ``exact_topk``, on
CUDA where torch sees it) against the faiss brute-force reference (eval/brute_force.py) on bench/eval_bench.py's
protocol data (bench/eval_protocol.py: Shopping100k's 12 attributes, labels in product families; --families 30,
--redraw 0.05 is eval_bench's dense setting), with the Top-K lists compared; on a GPU machine the same evaluator on
the CPU too."""

from __future__ import annotations

import time
from typing import Any

import torch

from eval.brute_force import brute_force_topk
from eval.protocol import build_manipulations
from eval.threshold_topk import cheaper_path, exact_topk
from eval.topk import compute_device

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    from eval_protocol import NAMES, NUM_VALUES, protocol_data
    from gpu_harness import Check, guarded, say, sync
except ImportError:  # imported as bench.gpu_evaluation
    from bench.eval_protocol import NAMES, NUM_VALUES, protocol_data
    from bench.gpu_harness import Check, guarded, say, sync


def run(check: Check) -> dict[str, Any]:
    a = check.args
    data = protocol_data(a.queries, a.gallery, a.families, a.redraw, a.embed_dim, a.global_dim)
    manipulations = data.manipulations()
    device = compute_device()

    def evaluator(on: torch.device, reps=data.query_reps, rows=manipulations):
        return exact_topk(data.model, reps, data.gallery, rows, a.k, device=on)

    say(f"evaluation: {a.queries:,} queries x {a.gallery:,} gallery, {len(manipulations):,} manipulations on {device}")
    warm = build_manipulations(data.query_labels[:8], data.gallery_labels, NAMES, NUM_VALUES)
    evaluator(device, data.query_reps[:8], warm)  # warm-up on 8 queries: CUDA context, cuBLAS handles, the pool
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fast = evaluator(device)
    sync(device)
    fast_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    say(f"evaluation: fsnet evaluate's evaluator {fast_s:.2f} s")
    start = time.perf_counter()
    slow = brute_force_topk(data.model, data.query_reps, data.gallery, manipulations, a.k)
    slow_s = time.perf_counter() - start
    say(f"evaluation: faiss brute force {slow_s:.2f} s")
    out = {
        "device": str(device),
        "path": cheaper_path(manipulations),
        "queries": a.queries,
        "gallery": a.gallery,
        "attributes": len(NUM_VALUES),
        "embed_dim": a.embed_dim,
        "global_dim": a.global_dim,
        "k": a.k,
        "manipulations": len(manipulations),
        "manipulations_per_query": round(len(manipulations) / a.queries, 2),
        "evaluator_s": round(fast_s, 3),
        "faiss_s": round(slow_s, 3),
        "speedup_vs_faiss": round(slow_s / fast_s, 3),
        "identical_top_k": bool((fast.positions == slow.positions).all()),
        "full_rows": fast.full_rows,
        "exact_rows": fast.exact_rows,
        "peak_gpu_mib": round(peak, 1) if peak is not None else None,
        "faiss_threads": faiss_threads(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type != "cpu" and not check.over_budget():

        def on_cpu() -> dict[str, Any]:
            start = time.perf_counter()
            top = evaluator(torch.device("cpu"))
            seconds = time.perf_counter() - start
            return {"seconds": round(seconds, 3), "identical_top_k": bool((top.positions == slow.positions).all())}

        out["evaluator_cpu"] = guarded("evaluation: the evaluator on the CPU", on_cpu)
        say(f"evaluation: the evaluator on the CPU {out['evaluator_cpu']}")
    return out


def faiss_threads() -> int | None:
    import faiss

    return faiss.omp_get_max_threads() if hasattr(faiss, "omp_get_max_threads") else None


def rows(e: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) lines of the part's entry for the table."""
    protocol = f"{e['queries']:,} x {e['gallery']:,}, {e['manipulations']:,} manipulations, r = {e['global_dim']}"
    times = f"{e['evaluator_s']} s / {e['faiss_s']} s ({e['speedup_vs_faiss']}x)"
    return [
        ("protocol", f"{protocol}; evaluate's path: {e['path']}"),
        (f"fsnet evaluate's evaluator on {e['device']} / faiss brute force", times),
        ("identical Top-K", str(e["identical_top_k"])),
        ("the evaluator on the CPU", str(e.get("evaluator_cpu", "-"))[:100]),
    ]

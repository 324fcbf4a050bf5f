"""One call on a GPU machine: fsnet's extraction, training and evaluation figures on whatever GPU is present, in one
JSON, each part timed and guarded so that one failing part records its error and the others run.

    python bench/gpu_check.py --out $OUT/gpu_check.json      # sized for ~5 minutes on one H200; --deadline-s bounds it
    python bench/gpu_check.py --dry-run                       # no CUDA: the same code paths at tiny sizes
On the GPU machine, with the bundle that ../shared/device/make-bundle.sh builds (Python 3.12, no s3fs: local files;
carry .devbundle):
    bash .devbundle/install.sh && export PYTHONPATH=/opt/bundle-site:$PWD && \\
        python3 bench/gpu_check.py --out $OUT/gpu_check.json
Most of a dry run's time is Ray's fixed costs (a Ray Train stage's start-up, an index run's actor spawn), which do
not shrink with the sizes.

Parts, in this order, one file each (each one's figures land in the JSON as soon as it ends):
  setup       bench/gpu_setup.py: a synthetic catalog packed by ``fsnet pack``, an untrained model
  extraction  bench/gpu_extraction.py: ``fsnet index`` end to end against the model alone and the decode alone
  training    bench/gpu_training.py: a Ray Train stage against a plain PyTorch loop of the same steps
  evaluation  bench/gpu_evaluation.py: the evaluator ``fsnet evaluate`` runs against faiss brute force
The harness they share (deadlines, the JSON written as it goes, Ray started as the jobs start it): bench/gpu_harness.py.

Time: --budget-s skips the optional runs (a second actor setting, the CPU evaluator, the steps-alone loop) once the
script has run that long; --deadline-s bounds the whole run: a part still running at its share of it (the deadline
less what the later parts need) is recorded as timed out, Ray is shut down to wake it, and the next part starts, so
that a hang costs one part, not the call. fsnet/ never starts Ray; this script does, for all the machine's CPUs and
GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
import torchvision
from rich.console import Console
from rich.table import Table

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    import gpu_evaluation
    import gpu_extraction
    import gpu_setup
    import gpu_training
    from gpu_harness import Check, say, start_ray, stop_ray
    from record import provenance
except ImportError:  # imported as bench.gpu_check
    from bench import gpu_evaluation, gpu_extraction, gpu_setup, gpu_training
    from bench.gpu_harness import Check, say, start_ray, stop_ray
    from bench.record import provenance

FULL = dict(  # on a GPU: sized so that the whole script stays near 5 minutes on one H200 with 16 cores
    images=30_000,
    distinct=2048,
    size=224,
    backbone="alexnet",  # the paper's and default.yaml's; the goals are stated for it
    batch=256,  # default.yaml's index.batch_size
    shard_rows=512,  # configs/synthetic.yaml's: ~6.5 MB shards at 224 px, ~60 of them to read in parallel
    train_batch=64,  # default.yaml's train.batch_size
    train_epochs=2,  # epoch 0 starts the pipeline; the last is the steady state
    model_seconds=8.0,
    warmup_runs=1,  # an index run before the measured ones takes the first-use costs (worker imports, page cache)
    queries=2000,
    gallery=18_000,
    families=30,  # eval_bench's dense setting: ~62 manipulations per query
    redraw=0.05,
    k=50,
    embed_dim=256,
    global_dim=256,
)
DRY = dict(  # no CUDA: the same code paths, the sizes as small as they go
    images=64,
    distinct=64,
    size=64,
    backbone="tiny",
    batch=32,
    shard_rows=32,
    train_batch=16,
    train_epochs=1,
    model_seconds=1.0,
    warmup_runs=0,
    queries=40,
    gallery=300,
    families=10,
    redraw=0.1,
    k=10,
    embed_dim=16,
    global_dim=16,
)
PARTS = {  # name -> (its module, the parts it needs), run in this order: training ends by shutting Ray down
    "extraction": (gpu_extraction, ("setup",)),
    "training": (gpu_training, ("setup",)),
    "evaluation": (gpu_evaluation, ()),
}
MODULES = {"setup": gpu_setup, **{name: module for name, (module, _) in PARTS.items()}}


def machine(cpus: int, gpus: int) -> dict[str, Any]:
    import faiss

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": cpus,
        "gpus": gpus,
        "gpu": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "ray": ray.__version__,
        "faiss": getattr(faiss, "__version__", None),
        "numpy": np.__version__,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1) if os.path.isdir("/dev/shm") else None,
    }


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The goals, met or not, where the figures exist (they are stated for an H100/H200): each part's own."""
    out: dict[str, Any] = {}
    for name, module in MODULES.items():
        if results.get(name, {}).get("ok") and hasattr(module, "goals"):
            out.update(module.goals(results[name]))
    return out


def show(results: dict[str, Any]) -> None:
    where = ", ".join(results["machine"]["gpu"]) or ("no GPU: CPU dry run" if results["dry_run"] else "no GPU: CPU")
    table = Table(title=f"fsnet GPU check ({where})")
    for column in ("part", "measurement", "figure"):
        table.add_column(column)
    for part, module in MODULES.items():
        entry = results.get(part)
        if entry is None:
            continue
        status = f"ok, {entry['seconds']:.1f} s" if entry.get("ok") else f"FAILED: {str(entry.get('error'))[:120]}"
        table.add_row(part, "status", status)
        if entry.get("ok"):
            for label, value in module.rows(entry):
                table.add_row("", label, value)
    for name, goal in results.get("goals", {}).items():
        table.add_row("goal", name, f"{'met' if goal['met'] else 'NOT met'} ({goal})")
    Console(width=160).print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, the tiny backbone: the code paths only")
    parser.add_argument("--work", help="folder for the catalog, model and indexes (default: a temporary one)")
    parser.add_argument("--parts", default="extraction,training,evaluation", help="comma-separated subset")
    parser.add_argument("--actors-per-gpu", default="1,2", help="embed actors per GPU to measure, e.g. 1,2")
    parser.add_argument("--budget-s", type=float, default=300.0, help="past this, optional runs are skipped")
    parser.add_argument(
        "--deadline-s", type=float, default=450.0, help="the whole run's limit: a part past its share is stopped"
    )
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None, help=f"default {value}")
    args = parser.parse_args(argv)
    for name, value in (DRY if args.dry_run else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.actors_per_gpu = [int(x) for x in str(args.actors_per_gpu).split(",") if x.strip()]
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    if gpus == 0 and not args.dry_run:
        say("no CUDA device: running the full sizes on the CPU (slow); --dry-run runs the tiny sizes")
    with contextlib.ExitStack() as stack:
        work = args.work or stack.enter_context(tempfile.TemporaryDirectory(prefix="fsnet-gpu-check-"))
        check = Check(args, os.path.abspath(work), args.out, cpus, gpus)
        check.results.update(
            format=1,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **provenance(),  # date, command and code version, as every bench/results file records them
            dry_run=args.dry_run,
            machine=machine(cpus, gpus),
            settings={k: v for k, v in vars(args).items() if k not in ("out", "work")},
        )
        say(f"machine: {check.results['machine']}")
        if {"extraction", "training"} & set(args.parts):
            try:  # on the main thread, as Ray prefers; setup tries again (guarded) where this fails
                check.results["ray_start_s"] = round(start_ray(check.config()), 2)
                check.results["ray_resources"] = {k: round(v, 1) for k, v in ray.cluster_resources().items()}
                say(f"Ray started in {check.results['ray_start_s']:.1f} s: {check.results['ray_resources']}")
            except Exception as err:  # noqa: BLE001 - recorded; the parts without Ray still run
                check.results["ray_start_error"] = f"{type(err).__name__}: {str(err)[:1500]}"
                say(f"Ray did not start: {check.results['ray_start_error'][:300]}")
            check.part("setup", gpu_setup.run)
        for name, (module, needs) in PARTS.items():  # in this order: training ends by shutting Ray down
            if name in args.parts:
                check.part(name, module.run, needs)
        if ray.is_initialized():
            stop_ray()
        check.results["goals"] = goals(check.results)
        check.write()
    show(check.results)
    say(f"figures written to {args.out}")
    failed = [p for p in ("setup", *args.parts) if p in check.results and not check.results[p]["ok"]]
    if check.hung:  # a stuck part's thread or Ray's exit hooks must not keep the process past the deadline
        sys.stdout.flush()
        os._exit(1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

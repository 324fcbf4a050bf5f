"""How pack, index and evaluate grow with the catalog, in one run on this machine: synthetic
catalogs of growing size, each packed, indexed and evaluated as fsnet's jobs do it, with wall time, images/s, peak
memory and bytes on storage per step and size, the fitted growth time ~ N^k, and, on the largest catalog, faiss
IVF-PQ against exact flat search (recall, build and search time, bytes), for the plan of a much larger catalog.

    python bench/scale_bench.py [--sizes 5000,20000,80000] [--queries 500] [--size 64] [--out scale.json]
    python bench/scale_bench.py --sizes 200,400 --queries 20 --size 32 --untrained --no-warmup   # ~1 minute
    python bench/scale_bench.py --work /big/disk ...   # where catalogs are written (a temporary folder under it)

Catalogs: ``fsnet synth`` renders the largest size once, growing (``--first``: images are a pure function of
(seed, index), so the 20k catalog is the 5k one plus 15k images), and ``fsnet pack`` packs each size from the rows
rendered so far (the tiny preset; 512-row shards, ~1 MB at 64 px, as configs/synthetic.yaml). Split: a fixed
--queries query images, --gallery-fraction of the catalog as gallery (so the gallery grows with N), the rest trains.
Steps, each the job's own function on a local Ray (started here unless one runs in this process, as in tests):
  pack      jobs.pack.pack: the source folder -> Parquet JPEG shards
  index     jobs.index.index(split="all"): every image decoded and embedded on Ray Data actors -> embedding shards
            + a flat faiss index (evaluate then reads the queries' representations from it)
  evaluate  jobs.evaluate.evaluate: every manipulation of every query, exact Top-k_max (eval/threshold_topk.py) over
            the gallery, curves and examples; the baselines are left out (eval.baselines=[]): each is another ranking
            pass over the same gallery, and the probe ones a trunk pass over the training split
One model serves every size: the tiny preset trained once by ``fsnet train`` on the smallest catalog (packed once
more apart; its time is reported, not fitted), or with --untrained an untrained one whose memory block is the
training images' mean features (throughput and memory do not depend on the weights; the IVF-PQ recall does). Then,
unless --no-warmup, one unmeasured index and evaluate of that catalog, so that one-time costs of a first run in this
process (imports in fresh Ray workers, the page cache, allocator pools) do not land on the smallest size alone.

Memory, sampled while each step runs: the driver's peak resident set (/proc/self/statm every 5 ms, eval_bench's
PeakRss: the absolute peak and the rise above the step's start), and Ray's workers every 100 ms with psutil (the
copy Ray ships): every process under this one (the local Ray started here or by the test: raylet -> workers) whose
command line Ray set to ``ray::<task or actor>`` (``ray::IDLE`` when idle); the largest single worker's peak and the
peak of their sum. A worker's RSS includes the object store's shared pages it has mapped, so the sum over-counts.
Evaluation runs in the driver: its rise is the evaluator's memory, printed beside the gallery size against one
(query_chunk, N) float32 block (threshold_topk reuses a few such arrays chunk after chunk) and against the (M, N)
array of every manipulation at once that chunking avoids; and the largest catalog is evaluated once more at a
quarter of eval.query_chunk, to show how much of that memory the chunk bounds.

Growth: per step, least squares of log t on log N over the sizes gives k (t ~ N^k) and of t on N the fixed
seconds and the seconds per image (t = a + b N); with fixed costs (actor start-up, Ray Data planning) k < 1 at small
N, and b is what a larger catalog adds per image. Bytes: catalog shards, embedding shards, the faiss index.

IVF-PQ (largest catalog): the gallery's global vectors from the index, searched with the query split's global vectors
(plain nearest neighbours, no manipulation): faiss IndexFlatL2 against IVF<nlist>,PQ<m>x<nbits> with nlist =
4 sqrt(N) (at most N / 39: each list trains on 39 points), m dividing the dimension (4- and 2-dimensional
sub-vectors, and fsnet's own index.kind=ivfpq choice, fsnet/index/faiss_index.py), nbits 8 (fewer when the gallery
has under 256 vectors), trained on the gallery itself, nprobe 1, 4, 16, 64 and fsnet's nlist / 8. Recall@k: the share
of the exact k nearest (float64 distances) each returns, a result within float32's reach of the k-th distance
(relative 1e-5 of |q|^2 + mean |g|^2) counting as one of them, so that exact flat search scores 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np
import ray
import torch

from fsnet.catalog.reader import Catalog
from fsnet.columns import column_array
from fsnet.config import Config, load_config
from fsnet.decode import decode_batch
from fsnet.index.faiss_index import factory_string
from fsnet.index.reader import IndexReader
from fsnet.model import build_model, save_model
from fsnet.model.memory import value_sums
from fsnet.storage import Storage
from jobs.evaluate import evaluate
from jobs.index import index
from jobs.pack import pack
from jobs.ray_runtime import init_ray
from jobs.synth import synth
from jobs.train import train

try:  # run as a script: bench/ is on sys.path
    from eval_bench import PeakRss
    from record import provenance
except ImportError:  # imported as bench.scale_bench (tests)
    from bench.eval_bench import PeakRss
    from bench.record import provenance

STEPS = ("pack", "index", "evaluate")
SHARD_ROWS = 512  # configs/synthetic.yaml's: ~1 MB of 64 px JPEGs per shard, so shards grow in number with N
ROW_GROUP_ROWS = 256  # default.yaml's (the tiny preset's 32 is for tests)
K_MAX = 50  # the paper's Top-K curves (default.yaml's eval.k_max; the tiny preset's is 20)
WORKER_SAMPLE_S = 0.1  # psutil walks the process tree each sample: every 100 ms costs well under 1% of a core
MEMORY_ROWS = 4096  # training images embedded for the untrained model's memory block
RECALL_AT = (10, 50)
NPROBES = (1, 4, 16, 64)
TIE = 1e-5  # float32 distances this close (relative to |q|^2 + mean |g|^2) cannot be ordered: counted as ties
MIB = 2**20


class WorkerRss(PeakRss):
    """Peak resident memory of Ray's worker processes under this one, sampled every WORKER_SAMPLE_S: the largest
    single worker's and that of their sum (see the module docstring). PeakRss's sampling thread, another watch."""

    def __enter__(self):
        import psutil  # Ray's own copy (ray/thirdparty_files), importable once ray is

        self.psutil, self.me = psutil, psutil.Process()
        self.largest = self.total = self.seen = 0
        return super().__enter__()

    def _watch(self):
        ps = self.psutil
        while not self.done:
            rss = []
            for p in self.me.children(recursive=True):
                try:
                    cmd = p.cmdline()
                    if cmd and cmd[0].startswith("ray::"):
                        rss.append(p.memory_info().rss)
                except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                    continue  # a worker that ended between the listing and the read
            if rss:
                self.largest, self.total = max(self.largest, *rss), max(self.total, sum(rss))
                self.seen = max(self.seen, len(rss))
            time.sleep(WORKER_SAMPLE_S)


def measure(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """fn() with its wall time and the driver's and workers' peak memory."""
    with PeakRss() as driver, WorkerRss() as workers:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, {
        "seconds": seconds,
        "driver_peak_mib": driver.peak / MIB,
        "driver_rise_mib": driver.mib,
        "worker_peak_mib": workers.largest / MIB,
        "workers_sum_peak_mib": workers.total / MIB,
        "workers": workers.seen,
    }


def folder_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def config(args: argparse.Namespace, source: str) -> Config:
    return load_config(
        ["tiny"],
        [
            f"source.path={source}",
            f"synthetic.size={args.size}",
            f"model.image_size={args.size}",
            f"catalog.shard_rows={SHARD_ROWS}",
            f"catalog.row_group_rows={ROW_GROUP_ROWS}",
            f"split.n_query={args.queries}",
            f"split.n_gallery={args.gallery_fraction}",
            f"eval.k_max={K_MAX}",
            f"eval.query_chunk={args.query_chunk}",
            "eval.baselines=[]",
            f"ray.num_cpus={os.cpu_count()}",
        ],
    )


def untrained_model(cfg: Config, catalog_url: str, url: str) -> None:
    """The tiny model, untrained, with its memory block from the training images' features (as tests do)."""
    storage = Storage(cfg.storage)
    catalog = Catalog.open(catalog_url, storage)
    torch.manual_seed(0)
    model = build_model(cfg.model, catalog.schema).eval()
    rows = next(catalog.batches("train", ["image", *catalog.schema.names], batch_size=MEMORY_ROWS))
    with torch.no_grad():
        reps = model.embed(decode_batch(list(rows["image"]), cfg.model.image_size)).reps  # (B, A, D)
    labels = torch.from_numpy(np.stack([rows[a] for a in catalog.schema.names], axis=1).astype(np.int64))  # (B, A)
    model.memory.set_means(*value_sums(reps, labels, catalog.schema.num_values))
    save_model(model, url, storage)


def render(args: argparse.Namespace, work: Path, rendered: int, n: int) -> float:
    """Grow the synthetic source from ``rendered`` to ``n`` images; the seconds it took."""
    cfg = config(args, "")
    cfg = cfg.model_copy(update={"synthetic": cfg.synthetic.model_copy(update={"n": n - rendered})})
    start = time.perf_counter()
    synth(cfg, str(work / "synth"), show_progress=False, first=rendered)
    return time.perf_counter() - start


def prepare_model(args: argparse.Namespace, work: Path, n: int) -> dict[str, Any]:
    """The one model: the smallest catalog packed apart (not measured) and the model trained (or made) on it; then,
    unless --no-warmup, index and evaluate once on it, not measured: the first run of a job in this process pays
    one-time costs (imports in fresh Ray workers, the page cache, allocator pools) that would otherwise land on the
    smallest size alone and bend the fit."""
    cfg, folder = config(args, str(work / "synth")), work / "model"
    catalog = str(folder / "catalog")
    pack(cfg, catalog, show_progress=False)
    start, url = time.perf_counter(), str(folder / "model.pt")
    if args.untrained:
        untrained_model(cfg, catalog, url)
    else:
        url = train(cfg, catalog, str(folder / "run")).model_url
    model = {"url": url, "trained": not args.untrained, "seconds": time.perf_counter() - start, "catalog_images": n}
    progress(f"model: {'trained' if model['trained'] else 'made, untrained,'} in {model['seconds']:.1f} s")
    if args.warmup:
        start = time.perf_counter()
        index(cfg, url, catalog, str(work / "warmup" / "index"), split="all")
        evaluate(cfg, str(work / "warmup" / "index"), catalog, str(work / "warmup" / "eval"))
        shutil.rmtree(work / "warmup")
        progress(f"warm-up index and evaluate of the {n:,}-image catalog: {time.perf_counter() - start:.1f} s")
    return model


def one_size(args: argparse.Namespace, work: Path, n: int, model: dict[str, Any]) -> dict[str, Any]:
    """Pack, index and evaluate a catalog of the first n synthetic images: one size's figures."""
    folder = work / f"n{n}"
    cfg = config(args, str(work / "synth"))
    catalog, index_url = str(folder / "catalog"), str(folder / "index")
    steps = {}
    _, steps["pack"] = measure(lambda: pack(cfg, catalog, show_progress=False))
    progress(f"n = {n:,}: pack {steps['pack']['seconds']:.1f} s")
    indexed, steps["index"] = measure(lambda: index(cfg, model["url"], catalog, index_url, split="all"))
    progress(f"n = {n:,}: index {steps['index']['seconds']:.1f} s")
    results, steps["evaluate"] = measure(lambda: evaluate(cfg, index_url, catalog, str(folder / "eval")))
    progress(f"n = {n:,}: evaluate {steps['evaluate']['seconds']:.1f} s")

    d = results["dataset"]
    queries, gallery, m = d["queries"], d["gallery"], d["manipulations"]
    for name, step in steps.items():
        step["images_per_s"] = (gallery if name == "evaluate" else n) / step["seconds"]
    chunk = min(args.query_chunk, queries)
    steps["evaluate"].update(
        topk_s=results["timings"]["topk"],
        timings=results["timings"],
        manipulations_per_s=m / results["timings"]["topk"],
        chunk_block_mib=chunk * gallery * 4 / MIB,  # one (query_chunk, N) float32 array
        all_at_once_mib=m * gallery * 4 / MIB,  # the (M, N) float32 scores chunking avoids
    )
    version = folder / "index" / f"v{indexed.manifest.version}"
    return {
        "n": n,
        "queries": queries,
        "gallery": gallery,
        "manipulations": m,
        "indexed": indexed.manifest.indexed,
        "steps": steps,
        "bytes": {
            "synth_source": folder_bytes(work / "synth"),  # n images: the next size renders after this one
            "catalog": folder_bytes(catalog),
            "embeddings": folder_bytes(version / "embeddings"),
            "faiss": (version / "index.faiss").stat().st_size,
            "index": folder_bytes(version),
        },
    }


def smaller_chunk(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """evaluate of the largest catalog once more at a quarter of eval.query_chunk: where the evaluator's memory is
    bounded by the chunk, its rise shrinks with it while the Top-K time hardly changes."""
    chunk = max(1, args.query_chunk // 4)
    cfg = config(argparse.Namespace(**{**vars(args), "query_chunk": chunk}), "")
    results, fig = measure(lambda: evaluate(cfg, str(folder / "index"), str(folder / "catalog"), str(folder / "eval4")))
    progress(f"evaluate at eval.query_chunk {chunk}: {fig['seconds']:.1f} s")
    return {"query_chunk": chunk, "topk_s": results["timings"]["topk"], **fig}


def growth(ns: list[int], ys: list[float]) -> dict[str, float]:
    """k of y ~ N^k (least squares on log-log) and a, b of y = a + b N."""
    k = float(np.polyfit(np.log(ns), np.log(ys), 1)[0])
    b, a = (float(v) for v in np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1))
    return {"k": k, "fixed": a, "per_image": b}


def global_vectors(reader: IndexReader, ids: np.ndarray) -> np.ndarray:
    return column_array(reader.embeddings(ids.astype(str).tolist(), ["id", "global"]), "global", (-1,))  # (n, r)


def ann_figures(index_url: str, catalog_url: str, storage: Storage) -> dict[str, Any]:
    """Exact flat search against IVF-PQ on the gallery's global vectors, the query split's as queries."""
    reader, catalog = IndexReader.open(index_url, storage), Catalog.open(catalog_url, storage)
    gallery = global_vectors(reader, catalog.split_ids("gallery"))  # (N, r)
    queries = global_vectors(reader, catalog.split_ids("query"))  # (Q, r)
    n, dim = gallery.shape
    k = min(max(RECALL_AT), n)
    nlist = max(1, min(round(4 * math.sqrt(n)), n // 39))
    nbits = min(8, int(math.log2(n)))  # PQ trains 2^nbits centroids per sub-quantizer on the gallery
    fsnet_m = int(factory_string("ivfpq", n, dim).split("PQ")[1].split("x")[0])
    ms = sorted({m for m in (dim // 4, dim // 2, fsnet_m) if m >= 1 and dim % m == 0})
    nprobes = sorted({p for p in (*NPROBES, max(1, nlist // 8)) if p <= nlist})

    runs = []  # (kind, figures, positions (Q, k))
    start = time.perf_counter()
    flat = faiss.IndexFlatL2(dim)
    flat.add(gallery)
    built = time.perf_counter() - start
    start = time.perf_counter()
    _, found = flat.search(queries, k)
    flat_fig = {"build_s": built, "search_s": time.perf_counter() - start, "bytes": serialized(flat)}
    runs.append((flat_fig, found))
    ivfpq = []
    for m in ms:
        start = time.perf_counter()
        index_ = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, m, nbits)
        index_.train(gallery)
        index_.add(gallery)
        fig = {"m": m, "nlist": nlist, "nbits": nbits, "fsnet_default": m == fsnet_m}
        fig.update(build_s=time.perf_counter() - start, bytes=serialized(index_), code_bytes=m * nbits // 8, runs=[])
        for nprobe in nprobes:
            index_.nprobe = nprobe
            start = time.perf_counter()
            _, found = index_.search(queries, k)
            run = {"nprobe": nprobe, "search_s": time.perf_counter() - start}
            fig["runs"].append(run)
            runs.append((run, found))
        ivfpq.append(fig)
    for fig, found in runs:
        fig.update({f"recall@{r}": v for r, v in recall(queries, gallery, found).items()})
    return {"gallery": n, "queries": len(queries), "dim": dim, "k": k, "flat": flat_fig, "ivfpq": ivfpq}


def serialized(index_: faiss.Index) -> int:
    return int(faiss.serialize_index(index_).nbytes)


def recall(queries: np.ndarray, gallery: np.ndarray, found: np.ndarray, chunk: int = 256) -> dict[int, float]:
    """Recall@r for r in RECALL_AT (<= found's width) against float64 distances, ties within TIE counted."""
    g = gallery.astype(np.float64)
    g2 = (g * g).sum(1)  # (N,)
    hits = {r: 0 for r in RECALL_AT if r <= found.shape[1]}
    for lo in range(0, len(queries), chunk):
        q = queries[lo : lo + chunk].astype(np.float64)
        q2 = (q * q).sum(1, keepdims=True)
        dist = q2 - 2 * q @ g.T + g2  # (chunk, N)
        tol = TIE * (q2[:, 0] + g2.mean())
        rows = found[lo : lo + chunk]  # (chunk, k) positions, -1: none
        got = np.where(rows >= 0, np.take_along_axis(dist, np.clip(rows, 0, None), 1), np.inf)
        for r in hits:
            kth = np.partition(dist, r - 1, axis=1)[:, r - 1]  # the r-th smallest exact distance
            hits[r] += int((got[:, :r] <= (kth + tol)[:, None]).sum())
    return {r: h / (len(queries) * r) for r, h in hits.items()}


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def print_table(r: dict[str, Any]) -> None:
    sizes, fit = r["sizes"], r["fit"]
    print(
        f"\nscale: tiny model at {r['image_size']} px ({'trained' if r['model']['trained'] else 'untrained'}), "
        f"{sizes[0]['queries']:,} queries, gallery {r['gallery_fraction']:g} of the catalog, "
        f"eval.query_chunk {r['query_chunk']}, k_max {K_MAX}; {r['machine']['cpus']} CPUs, load average "
        f"{r['machine']['load_average']:.1f}"
    )
    print(
        f"{'step':9}{'images':>9}{'gallery':>9}{'seconds':>9}{'images/s':>10}{'driver MiB (+rise)':>20}"
        f"{'worker MiB':>11}{'workers Σ':>10}  bytes on storage"
    )
    for step in STEPS:
        for s in sizes:
            f = s["steps"][step]
            stored = {
                "pack": f"catalog {s['bytes']['catalog'] / MIB:,.1f} MiB",
                "index": f"embeddings {s['bytes']['embeddings'] / MIB:,.1f} MiB, faiss {s['bytes']['faiss'] / MIB:,.1f}"
                " MiB",
                "evaluate": "",
            }[step]
            driver = f"{f['driver_peak_mib']:,.0f} (+{f['driver_rise_mib']:,.0f})"
            print(
                f"{step:9}{s['n']:>9,}{s['gallery']:>9,}{f['seconds']:>9.1f}{f['images_per_s']:>10,.0f}{driver:>20}"
                f"{f['worker_peak_mib']:>11,.0f}{f['workers_sum_peak_mib']:>10,.0f}  {stored}"
            )
    print("  (evaluate's images/s: gallery images; worker MiB: the largest Ray worker; Σ: all workers at once)")
    print(
        "growth t ~ N^k: "
        + "; ".join(
            f"{step} k = {g['k']:.2f} ({g['fixed']:.1f} s + {g['per_image'] * 1e3:.3f} ms/image)"
            for step, g in ((step, fit[step]) for step in STEPS)
        )
    )
    print(
        f"evaluation memory (driver rise) beside the gallery, k = {fit['evaluate_memory']['k']:.2f} over N "
        "(threshold_topk's arrays are (query_chunk, N), never (M, N)):"
    )
    for s in sizes:
        e, chunk = s["steps"]["evaluate"], min(r["query_chunk"], s["queries"])
        print(
            f"  gallery {s['gallery']:>8,}: peak +{e['driver_rise_mib']:7,.1f} MiB; one ({chunk}, N) block "
            f"{e['chunk_block_mib']:6,.1f} MiB; all {s['manipulations']:,} manipulations at once "
            f"{e['all_at_once_mib']:8,.1f} MiB; Top-K {e['topk_s']:.2f} s ({e['manipulations_per_s']:,.0f} "
            "manipulations/s)"
        )
    c, e = r["smaller_chunk"], sizes[-1]["steps"]["evaluate"]
    print(
        f"  gallery {sizes[-1]['gallery']:>8,} at eval.query_chunk {c['query_chunk']}: peak "
        f"+{c['driver_rise_mib']:,.1f} MiB, Top-K {c['topk_s']:.2f} s (at {r['query_chunk']}: "
        f"+{e['driver_rise_mib']:,.1f} MiB, {e['topk_s']:.2f} s)"
        + (
            f": the chunk holds {c['bytes_per_pair']:.0f} bytes per (query, gallery image)"
            if c["bytes_per_pair"] is not None
            else ""
        )
    )
    m = r["model"]
    print(
        f"model: {'trained' if m['trained'] else 'made'} once on the {m['catalog_images']:,}-image catalog in "
        f"{m['seconds']:.0f} s (not in the figures)"
    )
    a = r["ann"]
    print(
        f"\nnearest neighbours on the {sizes[-1]['n']:,}-image catalog's gallery ({a['gallery']:,} global vectors of "
        f"{a['dim']}), {a['queries']:,} queries, k = {a['k']}:"
    )
    print(
        f"{'index':28}{'nprobe':>7}{'build s':>9}{'search s':>10}{'MiB':>9}"
        + "".join(f"{'recall@' + str(k):>11}" for k in RECALL_AT)
    )
    rows = [("flat (exact)", "", a["flat"], a["flat"])]
    for p in a["ivfpq"]:
        name = f"IVF{p['nlist']},PQ{p['m']}x{p['nbits']}" + (" (fsnet's)" if p["fsnet_default"] else "")
        rows += [(name if i == 0 else "", run["nprobe"], p if i == 0 else None, run) for i, run in enumerate(p["runs"])]
    for name, nprobe, built, run in rows:
        build, size = (f"{built['build_s']:>9.2f}", f"{built['bytes'] / MIB:>9.2f}") if built else (" " * 9, " " * 9)
        print(
            f"{name:28}{nprobe:>7}{build}{run['search_s']:>10.3f}{size}"
            + "".join(f"{run[f'recall@{k}']:>11.3f}" for k in RECALL_AT if f"recall@{k}" in run)
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,80000", help="catalog sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=500, help="query images (split.n_query), the same at every size")
    parser.add_argument("--gallery-fraction", type=float, default=0.4, help="split.n_gallery: the gallery grows with N")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (synthetic.size, model.image_size)")
    parser.add_argument("--query-chunk", type=int, default=256, help="eval.query_chunk: bounds the evaluator's memory")
    parser.add_argument("--untrained", action="store_true", help="an untrained model instead of fsnet train's")
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="leave out the unmeasured first index and evaluate"
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for catalogs (a temporary folder under it)")
    parser.add_argument("--out", type=Path, default=Path("scale_bench.json"), help="the JSON of every figure")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    if len(sizes) < 2:
        parser.error(f"--sizes {args.sizes}: at least two sizes, to fit the growth")
    start = time.perf_counter()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    started_ray = not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="scale-bench-", dir=args.work) as tmp:
        work = Path(tmp)
        ray_start = time.perf_counter()
        init_ray(config(args, str(work / "synth")).ray)  # before the steps: its start-up is no step's
        ray_start_s = time.perf_counter() - ray_start
        progress(f"Ray up in {ray_start_s:.1f} s; sizes {', '.join(f'{n:,}' for n in sizes)}; work folder {work}")
        try:
            rendered = {sizes[0]: render(args, work, 0, sizes[0])}
            model = prepare_model(args, work, sizes[0])
            rows = []
            for before, n in zip([0, *sizes], sizes):
                if n not in rendered:
                    rendered[n] = render(args, work, before, n)
                rows.append(one_size(args, work, n, model))
                rows[-1]["synth_s"] = rendered[n]  # rendering the images this size adds (not a step)
                if n != sizes[-1]:  # disk: only the largest catalog is needed afterwards
                    shutil.rmtree(work / f"n{n}")
            storage = Storage(config(args, "").storage)
            largest = work / f"n{sizes[-1]}"
            smaller = smaller_chunk(args, largest)
            ann = ann_figures(str(largest / "index"), str(largest / "catalog"), storage)
        finally:
            if started_ray:
                ray.shutdown()
    ns = [s["n"] for s in rows]
    fit = {step: growth(ns, [s["steps"][step]["seconds"] for s in rows]) for step in STEPS}
    last, queries = rows[-1], rows[-1]["queries"]
    pairs = (min(args.query_chunk, queries) - min(smaller["query_chunk"], queries)) * last["gallery"]
    rise = last["steps"]["evaluate"]["driver_rise_mib"] - smaller["driver_rise_mib"]
    # what one more query in the chunk costs per gallery image
    smaller["bytes_per_pair"] = rise * MIB / pairs if pairs else None
    fit["evaluate_memory"] = growth(ns, [max(s["steps"]["evaluate"]["driver_rise_mib"], 1e-3) for s in rows])
    result = {
        **provenance(None if argv is None else ["bench/scale_bench.py", *argv]),  # date, command, code version
        "machine": {
            "platform": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0],
            "torch": torch.__version__,
            "ray": ray.__version__,
            "faiss": faiss.__version__,
        },
        "image_size": args.size,
        "gallery_fraction": args.gallery_fraction,
        "query_chunk": args.query_chunk,
        "k_max": K_MAX,
        "shard_rows": SHARD_ROWS,
        "ray_start_s": ray_start_s,
        "model": {k: v for k, v in model.items() if k != "url"},
        "sizes": rows,
        "fit": fit,
        "smaller_chunk": smaller,
        "ann": ann,
        "total_s": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"\nfigures written to {args.out} ({result['total_s']:.0f} s in all)")
    return result


if __name__ == "__main__":
    main()

"""Re-index cost of a growing catalog: a full `fsnet index --split all` against the `fsnet reindex` after 1% more
images were added and the catalog re-packed to the same URL, in one run, with the fixed start-up apart.

    python bench/reindex_bench.py [--n 10000] [--shard-rows 100] [--grow 0.01] [--size 64] [--train-epochs 1]
                                  [--out PATH]

1. `fsnet synth` renders N images (64 px) -> `fsnet pack` (catalog.shard_rows=100) -> `fsnet train` with the tiny
   preset (one epoch per stage by default: the weights do not change what indexing costs) -> `fsnet index --split
   all` on the Ray Data actor pool, in a Ray of its own as the command would start.
2. 1% more images, rendered the same way with new ids (`synth --first N`); one of them is labelled with a colour
   the catalog has not seen ("navy": sorted codes would move orange, purple, red, white and yellow, so every
   shard would change) -> `fsnet pack` to the same URL -> `fsnet reindex` (what jobs/reindex.py runs): a delta
   under index.in_process_max is embedded in the process, without starting Ray; the same delta is also re-indexed
   on the actor pool (index.in_process_max=0, a fresh Ray) for the threshold's comparison.
3. Shards kept by the re-pack, shards reused / extracted by the re-index, and the times. Fixed start-up, paid by
   any run on the pool whatever it extracts, is measured apart: Ray's start, the model's load, and the extract
   chain's start-up (one image through read_parquet -> EmbedImages actor pool -> write_parquet).

The goal it checks: a re-index after 1% more images costs at most 5% of the full index, each as its command runs
(the full index's Ray start included). Writes its figures to bench/results/reindex_bench.json (bench/record.py;
--no-record: print only).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time

import pandas as pd
import ray
import ray.data
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.model import load_model
from fsnet.storage import Storage, join
from jobs.embed_rows import embed_rows
from jobs.index import index
from jobs.pack import pack
from jobs.ray_runtime import start_local_ray
from jobs.synth import synth
from jobs.train import train

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.reindex_bench
    from bench.record import Table, add_record_options, write_result

NEW_VALUE = ("color", "navy")  # a colour name the synthetic catalog does not have: it sorts between green and orange


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def busy(timings: dict[str, float]) -> float:
    return timings.get("decode_busy", 0.0) + timings.get("model_busy", 0.0)


def fresh_ray() -> float:
    """A Ray of its own for each step, as each fsnet command starts one; returns its start-up seconds."""
    if ray.is_initialized():
        ray.shutdown()
    return timed(start_local_ray, os.cpu_count(), dashboard=True)[1]  # Ray Train's state API needs the dashboard


def extract_start_up(cfg, storage: Storage, model_url: str, catalog: Catalog, out: str) -> float:
    """Seconds for ONE image through the index's extract chain (read_parquet of a shard -> tag -> EmbedImages actor
    pool, spawned, model loaded -> write_parquet): what every index run pays however few images it extracts."""
    first = catalog.manifest.shards[0].fingerprint
    rows = catalog.dataset(None, ["id", "image", *catalog.schema.names], shards=[first], with_shard=True).limit(1)
    fs, path = storage.arrow_fs(out)
    start = time.perf_counter()
    embed_rows(cfg, storage, model_url, catalog, rows, with_shard=True).write_parquet(path, filesystem=fs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--shard-rows", type=int, default=100)
    parser.add_argument("--grow", type=float, default=0.01)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=1,
        help="epochs per training stage (0: the tiny preset's 2, 2, 1); the weights do not change what indexing costs",
    )
    parser.add_argument("--no-new-value", action="store_true", help="no image with an unseen value among the new ones")
    add_record_options(parser, "reindex_bench")
    args = parser.parse_args()
    added = max(1, round(args.n * args.grow))
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {gpu}, python {platform.python_version()}, "
        f"ray {ray.__version__}; load average {os.getloadavg()[0]:.1f} at the start"
    )

    sets = [f"synthetic.size={args.size}", f"catalog.shard_rows={args.shard_rows}"]
    with tempfile.TemporaryDirectory() as tmp:
        src, catalog_url, run, index_url = (f"{tmp}/{name}" for name in ("synth", "catalog", "run", "index"))
        cfg = load_config(["tiny"], [*sets, f"synthetic.n={args.n}", f"source.path={src}"])
        pool_cfg = load_config(["tiny"], [*sets, "index.in_process_max=0"])
        epochs = [f"train.stage{s}.epochs={args.train_epochs}" for s in (1, 2, 3)] if args.train_epochs else []
        train_cfg = load_config(["tiny"], [*sets, *epochs])
        storage = Storage(cfg.storage)
        fresh_ray()

        _, synth_s = timed(synth, cfg, src, show_progress=False)
        first_pack, pack_s = timed(pack, cfg, catalog_url, show_progress=False)
        trained, train_s = timed(train, train_cfg, catalog_url, run)
        model_url = trained.model_url
        ray_start = fresh_ray()  # the full index's actor pool runs in a Ray of its own, as the command starts one
        # on the pool: on two CPUs the command would embed in its own process (jobs/embed_rows.py embeds_here)
        full, full_wall = timed(index, pool_cfg, model_url, catalog_url, index_url, "all")
        full_m = full.manifest
        print(
            f"\n{args.n:,} images of {args.size} px, {len(first_pack.manifest.shards)} shards of {args.shard_rows}: "
            f"synth {synth_s:.1f} s, pack {pack_s:.1f} s, train (tiny) {train_s:.1f} s"
        )

        grow_cfg = load_config(["tiny"], [*sets, f"synthetic.n={added}"])
        synth(grow_cfg, src, show_progress=False, first=args.n)
        if not args.no_new_value:
            labels = pd.read_csv(
                io.BytesIO(storage.read_bytes(join(src, "labels.csv"))), dtype=str, keep_default_na=False
            )
            labels.loc[labels["image"] == f"{args.n:06d}.jpg", NEW_VALUE[0]] = NEW_VALUE[1]
            storage.write_text(join(src, "labels.csv"), labels.to_csv(index=False))
        repack, repack_s = timed(pack, cfg, catalog_url, show_progress=False)
        pool_index = f"{tmp}/index-pool"  # the same delta on the actor pool, for the threshold's comparison
        storage.write_bytes(join(pool_index, "CURRENT"), storage.read_bytes(join(index_url, "CURRENT")))
        for name in storage.listdir(index_url):
            if name.startswith("v"):
                copy_tree(storage, join(index_url, name), join(pool_index, name))
        ray_restart = fresh_ray()
        pool_re, _ = timed(index, pool_cfg, model_url, catalog_url, pool_index, "all")
        ray.shutdown()  # what `fsnet reindex` runs on a few images: in this process, no Ray started
        re, re_wall = timed(index, cfg, model_url, catalog_url, index_url, "all")
        re_m = re.manifest
        assert not ray.is_initialized(), "the re-index of a few images started Ray"

        catalog = Catalog.open(catalog_url, storage)
        _, model_load = timed(load_model, model_url, storage)
        fresh_ray()
        stage_start_up = extract_start_up(cfg, storage, model_url, catalog, f"{tmp}/one-image")
        ray.shutdown()

    colours = next(a.values for a in repack.manifest.attributes if a.name == NEW_VALUE[0])
    reused = [s for s in re_m.shards if s.reused_from is not None]
    extracted = [s for s in re_m.shards if s.reused_from is None]
    t_full, t_re, t_pool = full_m.timings, re_m.timings, pool_re.manifest.timings
    full_command = t_full["total"] + ray_start  # as `fsnet index` runs: its Ray's start, then the job
    print(
        f"grew by {added} images ({args.grow:.0%})"
        + ("" if args.no_new_value else f", one with the new value {NEW_VALUE[0]}={NEW_VALUE[1]}")
        + f"; re-pack {repack_s:.1f} s: {repack.shards_kept} of {len(first_pack.manifest.shards)} shards kept "
        f"unchanged, {len(repack.manifest.shards) - repack.shards_kept} written; {NEW_VALUE[0]} values now "
        f"{', '.join(colours)}"
    )
    print(
        f"re-index: {len(reused)} shards reused, {len(extracted)} extracted ({sum(s.rows for s in extracted)} rows)\n"
    )
    print(f"{'':34s}{'full index':>12s}{'re-index':>12s}{'(on the pool)':>15s}")
    for key, name in (
        ("copy_reused", "copy reused embeddings"),
        ("extract", "extract (read, decode, embed, write)"),
        ("decode_busy", "  of which decoding"),
        ("model_busy", "  of which in the model"),
        ("faiss", "faiss over every row"),
        ("total", "whole job"),
    ):
        print(f"  {name:32s}{t_full.get(key, 0):10.1f} s{t_re.get(key, 0):10.1f} s{t_pool.get(key, 0):13.1f} s")
    print(f"  {'Ray start before it':32s}{ray_start:10.1f} s{'none':>12s}{ray_restart:13.1f} s")
    print(f"  {'wall, as called':32s}{full_wall:10.1f} s{re_wall:10.1f} s")
    print("\nfixed start-up (paid by every run on the actor pool, whatever it extracts):")
    print(
        f"  Ray start {ray_start:.1f} / {ray_restart:.1f} s; model load {model_load:.2f} s; the extract chain on one "
        f"image (read task, actor spawn, model load, write) {stage_start_up:.1f} s"
    )
    print(f"  load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates the fixed costs)")
    ratio = t_re["total"] / full_command
    met = ratio <= 0.05
    print(
        f"\nre-index / full index, each as its command runs (Ray's start where it starts one): {t_re['total']:.1f} / "
        f"{full_command:.1f} s = {ratio:.1%}; goal <= 5%: {'met' if met else 'NOT met'}"
    )
    kept = f"{repack.shards_kept} of {len(first_pack.manifest.shards)}"
    write_result(
        args,
        "reindex_bench",
        "Re-index after more images against the full index, with the fixed start-up apart",
        [
            Table(
                "main",
                ["measurement", "this run"],
                [
                    [
                        "re-pack: old shards kept byte for byte / shards written",
                        f"{kept} / {len(repack.manifest.shards) - repack.shards_kept}",
                    ],
                    [
                        "re-index: shards reused / extracted",
                        f"{len(reused)} / {len(extracted)} ({sum(s.rows for s in extracted)} rows)",
                    ],
                    [
                        f"full index of {full_m.indexed:,} images on the actor pool: Ray start + job",
                        f"{ray_start:.1f} + {t_full['total']:.1f} s",
                    ],
                    [
                        f"re-index after +{args.grow:.0%}, embedded in the process, no Ray (whole job)",
                        f"{t_re['total']:.1f} s (extract {t_re.get('extract', 0):.1f}, copy reused "
                        f"{t_re.get('copy_reused', 0):.1f}, faiss {t_re.get('faiss', 0):.1f})",
                    ],
                    [
                        "the same re-index on the actor pool: Ray start + job",
                        f"{ray_restart:.1f} + {t_pool['total']:.1f} s (extract {t_pool.get('extract', 0):.1f})",
                    ],
                    [
                        "fixed on the pool: the extract chain on one image (read task, actor spawn, model load, write)",
                        f"{stage_start_up:.1f} s",
                    ],
                    [
                        "goal: re-index ≤ 5% of the full index, each as its command runs",
                        f"{t_re['total']:.1f} / {full_command:.1f} s = {ratio:.1%}: {'met' if met else 'not met'}",
                    ],
                ],
            )
        ],
        notes=[
            f"{args.n:,} synthetic {args.size} px images packed in shards of {args.shard_rows}, the tiny preset "
            f"trained, `index --split all` on the actor pool in a fresh local Ray; then {added} new images"
            + ("" if args.no_new_value else f", one labelled with a value the catalog had not seen ({NEW_VALUE[1]})")
            + ", re-packed to the same URL, `reindex` (a delta under index.in_process_max: embedded in the process, "
            "no Ray), and the same delta on the actor pool for comparison."
        ],
    )


def copy_tree(storage: Storage, source: str, target: str) -> None:
    """A folder's files, recursively (an index version for the pool's copy of the re-index)."""
    fs, path = storage.fs(source)
    for found in fs.find(path):
        storage.write_bytes(join(target, found[len(path) + 1 :]), fs.cat_file(found))


if __name__ == "__main__":
    main()

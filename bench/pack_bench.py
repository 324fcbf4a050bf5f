"""Pack throughput and synthetic rendering speed, measured side by side on this machine.

    python bench/pack_bench.py [--data ../shared/data/fashion-product-small] [--synth-n 2000] [--out PATH]

1. fashion-product-small local -> local through `jobs.pack` (Ray Data, ShardWriter actors), against a plain
   one-process loop doing the same work (read each file, decode it with PIL, write Parquet shards): images/s
   of each and their ratio. Ray's start-up is reported apart from the pack itself.
2. Synthetic rendering at 96 px in one process (draw + noise + JPEG): images/s per core.

Writes its figures to bench/results/pack_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from fsnet.catalog.image_check import check_image
from fsnet.catalog.synthetic import encode_jpeg, render_garment, sample_garment
from fsnet.config import load_config
from jobs.pack import pack

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.pack_bench
    from bench.record import Table, add_record_options, write_result

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-product-small"


def plain_loop_pack(data: Path, out: Path, shard_rows: int) -> float:
    """The same work as one ShardWriter, in one process, no Ray: the baseline."""
    start = time.perf_counter()
    labels = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)
    out.mkdir(parents=True, exist_ok=True)
    for shard, offset in enumerate(range(0, len(labels), shard_rows)):
        rows = labels.iloc[offset : offset + shard_rows]
        blobs, widths, heights = [], [], []
        for name in rows["image"]:
            blob = (data / "images" / name).read_bytes()
            _, w, h = check_image(blob, ["JPEG", "PNG"])
            blobs.append(blob)
            widths.append(w)
            heights.append(h)
        table = pa.table(
            {"id": rows["image"].tolist(), "image": pa.array(blobs, pa.binary()), "width": widths, "height": heights}
        )
        pq.write_table(
            table,
            out / f"part-{shard:05d}.parquet",
            compression={"id": "ZSTD", "image": "NONE", "width": "ZSTD", "height": "ZSTD"},
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--synth-n", type=int, default=2000)
    add_record_options(parser, "pack_bench")
    args = parser.parse_args()
    rows, figures = [], {}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, ray "
        f"{ray.__version__}"
    )

    if (args.data / "labels.csv").exists():
        cfg = load_config(["fashion_product_small"], [f"source.path={args.data}"])
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
            ray_start = time.perf_counter() - t0
            result = pack(cfg, f"{tmp}/ray", show_progress=False)
            baseline = plain_loop_pack(args.data, Path(tmp) / "plain", cfg.catalog.shard_rows)
            ray.shutdown()
        n = result.rows_in
        print(f"\npack {args.data.name}: {n:,} images, {len(result.manifest.shards)} shards")
        print(f"  ray start-up             {ray_start:6.2f} s (not counted below)")
        print(f"  fsnet pack (Ray Data)    {result.seconds:6.2f} s  {n / result.seconds:8,.0f} images/s")
        print(f"  plain one-process loop   {baseline:6.2f} s  {n / baseline:8,.0f} images/s")
        print(f"  ratio pack / plain       {baseline / result.seconds:6.2f}x")
        print(
            f"  inside the pack: Ray Data stage {result.stage_seconds:.2f} s wall, ShardWriters busy "
            f"{result.writer_seconds:.2f} s "
            f"({n / result.writer_seconds:,.0f} images/s per busy writer); the rest is actor start-up and the"
            f" driver's table, split and publish work"
        )
        rows += [
            [
                f"`fsnet pack` of {args.data.name} ({n:,} photos) local → local, Ray start excluded",
                f"{result.seconds:.2f} s, {n / result.seconds:,.0f} images/s",
            ],
            [
                "the same work in a plain one-process loop (read, PIL decode, Parquet), same run",
                f"{baseline:.2f} s, {n / baseline:,.0f} images/s",
            ],
            ["ratio pack / plain loop", f"{baseline / result.seconds:.2f}×"],
            [
                "inside the pack: ShardWriter throughput while busy",
                f"{n / result.writer_seconds:,.0f} images/s per busy writer",
            ],
            ["Ray start-up (local, not counted above)", f"{ray_start:.2f} s"],
        ]
        figures.update(
            images=n,
            pack_s=round(result.seconds, 3),
            plain_loop_s=round(baseline, 3),
            ray_start_s=round(ray_start, 3),
            writer_busy_s=round(result.writer_seconds, 3),
        )
    else:
        print(f"\n{args.data} not found: pack benchmark skipped")

    size = 96
    start = time.perf_counter()
    for i in range(args.synth_n):
        g = sample_garment(0, i)
        encode_jpeg(render_garment(g, size, np.random.default_rng([0, i, 1])).image, 90)
    seconds = time.perf_counter() - start
    print(
        f"\nsynthetic rendering at {size} px, one core: {args.synth_n:,} images in {seconds:.2f} s = "
        f"{args.synth_n / seconds:,.0f} images/s per core"
    )
    rows.append(
        [f"synthetic rendering at {size} px (draw, noise, JPEG), one core", f"{args.synth_n / seconds:,.0f} images/s"]
    )
    figures.update(synthetic_images=args.synth_n, synthetic_s=round(seconds, 3))
    write_result(
        args,
        "pack_bench",
        "fsnet pack against a plain one-process loop; synthetic rendering",
        [Table("main", ["measurement", "figure"], rows)],
        figures=figures,
    )


if __name__ == "__main__":
    main()

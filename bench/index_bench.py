"""Index throughput: end-to-end images/s of `jobs.index` (read Parquet shards -> decode -> embed -> write embedding
shards -> faiss) against the model-only forward of the same model and input size on pre-decoded images, in one run,
with where the time goes.

    python bench/index_bench.py [--data ../shared/data/fashion-product-small] [--split gallery] [--batch 256]
                                [--out PATH]

The model is MobileNetV2 at 96 px (configs/cpu_mobilenet96.yaml) with untrained weights: throughput does not depend
on them. On CPU the index runs one embed actor per CPU but one, each holding one CPU (torch on one thread); the
model-only figure is measured on one thread too, and on all threads for reference. On a CUDA machine the actor
decodes with nvJPEG and runs fp16 / channels_last, and the model-only figure does the same. Writes its figures to
bench/results/index_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import ray
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.model import build_model, save_model
from fsnet.storage import Storage
from jobs.index import index
from jobs.pack import pack

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.index_bench
    from bench.record import Table, add_record_options, write_result

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-product-small"


def model_only(model, images: torch.Tensor, batch: int, threads: int, seconds: float = 10.0) -> float:
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    done, start = 0, None
    while start is None or time.perf_counter() - start < seconds:
        for i in range(0, len(images), batch):
            x = images[i : i + batch].to(device)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                model.global_representation(model.embed(x).reps)
            if start is None:  # the first batch warms up
                start = time.perf_counter()
                continue
            done += len(x)
        if cuda:
            torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="gallery")
    parser.add_argument("--batch", type=int, default=256)
    add_record_options(parser, "index_bench")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}")
    sets = ["model.weights=none", f"index.batch_size={args.batch}"]
    cfg = load_config(["fashion_product_small", "cpu_mobilenet96"], [f"source.path={args.data}", *sets])
    storage = Storage(cfg.storage)
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=True, logging_level="ERROR")
        pack(cfg, f"{tmp}/catalog", show_progress=False)
        catalog = Catalog.open(f"{tmp}/catalog", storage)
        torch.manual_seed(0)
        model = build_model(cfg.model, catalog.schema).eval()
        save_model(model, f"{tmp}/model.pt", storage)

        m = index(cfg, f"{tmp}/model.pt", f"{tmp}/catalog", f"{tmp}/index", split=args.split).manifest
        ray.shutdown()
        n, t = m.indexed, m.timings
        sample = next(catalog.batches(args.split, ["image"], batch_size=1024))
        images = decode_batch(list(sample["image"]), cfg.model.image_size)
        one = model_only(model, images, args.batch, 1)
        every = model_only(model, images, args.batch, threads)

    print(
        f"\nindex of {args.data.name} ({args.split}): {n:,} images, MobileNetV2 at {cfg.model.image_size} px, "
        f"batch {args.batch}"
    )
    print(f"  end to end (extract: read, decode, embed, write) {t['extract']:7.1f} s  {n / t['extract']:8.1f} images/s")
    print(f"  model only, 1 thread (what one actor holds)        {'':7s}    {one:8.1f} images/s")
    print(f"  model only, {threads} threads                            {'':7s}    {every:8.1f} images/s")
    print(f"  ratio end to end / model only (1 thread)          {n / t['extract'] / one:8.2f}")
    print(
        f"  where time goes, summed over actors: decode {t['decode_busy']:.1f} s, model {t['model_busy']:.1f} s; "
        f"read + write + scheduling: the rest of {t['extract']:.1f} s wall; faiss {t['faiss']:.2f} s; "
        f"whole job {t['total']:.1f} s"
    )
    end_to_end = n / t["extract"]
    write_result(
        args,
        "index_bench",
        "fsnet index end to end against the model alone",
        [
            Table(
                "main",
                ["measurement", "images/s"],
                [
                    [
                        f"`fsnet index` end to end (read, decode, embed, write; {t['extract']:.1f} s)",
                        f"{end_to_end:.1f}",
                    ],
                    ["model only, one thread (what one embed actor holds)", f"{one:.1f}"],
                    [f"model only, {threads} threads", f"{every:.1f}"],
                    [
                        "ratio end to end / model only",
                        f"{end_to_end / one:.2f} per actor-thread; {end_to_end / every:.2f} against all threads",
                    ],
                ],
            ),
            Table(
                "time",
                ["where the time went", "seconds"],
                [
                    ["the embed actors in the model", f"{t['model_busy']:.1f}"],
                    ["the embed actors decoding", f"{t['decode_busy']:.1f}"],
                    ["faiss", f"{t['faiss']:.2f}"],
                    ["extract, end to end", f"{t['extract']:.1f}"],
                    ["the whole job", f"{t['total']:.1f}"],
                ],
                "where the time goes",
            ),
        ],
        notes=[
            f"The {args.data.name} {args.split} split, {n:,} images; MobileNetV2 at {cfg.model.image_size} px with "
            f"untrained weights, batch {args.batch}; `fsnet index` from local Parquet shards to local embedding "
            "shards + faiss, against the same model's forward on pre-decoded images, in one run."
        ],
    )


if __name__ == "__main__":
    main()

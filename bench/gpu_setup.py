"""The GPU check's setup part: a synthetic catalog, --distinct garment photos rendered by ``fsnet synth`` at --size px,
repeated to --images rows (ids unique; rendering all of them would cost more than what is measured), packed by
``fsnet pack`` into local Parquet JPEG shards; and an untrained model (``model.weights: none``) saved."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from fsnet.catalog.reader import Catalog
from fsnet.model import build_model, load_model, save_model
from fsnet.storage import join
from jobs.pack import pack
from jobs.synth import synth

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    from gpu_harness import Check, say, start_ray
except ImportError:  # imported as bench.gpu_setup
    from bench.gpu_harness import Check, say, start_ray

ROWS_TABLE = "rows.csv"  # the synthetic label table repeated to --images rows, beside synth's labels.csv


def run(check: Check) -> dict[str, Any]:
    a = check.args
    if not ray.is_initialized():  # main() started it; after a timed-out part's shutdown, again
        check.results["ray_start_s"] = round(start_ray(check.config()), 2)
    say(f"setup: rendering {a.distinct:,} images at {a.size} px")
    source = join(check.work, "synth")
    start = time.perf_counter()
    synth(check.config([f"synthetic.n={a.distinct}"]), source, show_progress=False)
    synth_s = time.perf_counter() - start
    labels = pd.read_csv(join(source, "labels.csv"), dtype=str, keep_default_na=False)
    rows = labels.iloc[np.arange(a.images) % len(labels)].reset_index(drop=True)
    rows.insert(0, "id", [f"{i:07d}" for i in range(len(rows))])
    rows.to_csv(join(source, ROWS_TABLE), index=False)
    say(f"setup: packing {a.images:,} rows ({a.distinct:,} distinct images)")
    packed = pack(
        check.config([f"source.path={source}", f"source.table={ROWS_TABLE}", "source.id_column=id"]),
        check.catalog_url,
        show_progress=False,
    )
    catalog = Catalog.open(check.catalog_url, check.storage)
    cfg = check.config()
    torch.manual_seed(0)
    save_model(build_model(cfg.model, catalog.schema), check.model_url, check.storage)
    shard_bytes = sum(os.path.getsize(join(check.catalog_url, s.path)) for s in catalog.manifest.shards)
    return {
        "images": catalog.manifest.rows,
        "distinct_images": a.distinct,
        "image_size": a.size,
        "shards": len(catalog.manifest.shards),
        "shard_bytes": shard_bytes,
        "jpeg_bytes_mean": round(shard_bytes / max(1, a.images)),
        "splits": {s: int(len(catalog.split_ids(s))) for s in ("query", "gallery", "train")},
        "synth_s": round(synth_s, 2),
        "pack_s": round(packed.seconds, 2),
        "model": {
            "backbone": cfg.model.backbone,
            "weights": cfg.model.weights,
            "variant": cfg.model.variant,
            "image_size": cfg.model.image_size,
            "attributes": catalog.schema.names,
            "parameters": sum(p.numel() for p in load_model(check.model_url, check.storage).parameters()),
        },
    }


def rows(e: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) lines of the part's entry for the table."""
    m = e["model"]
    catalog = f"{e['images']:,} images ({e['distinct_images']:,} distinct) at {e['image_size']} px"
    return [
        ("catalog", f"{catalog}, {e['shards']} shards, {e['jpeg_bytes_mean']:,} B per JPEG"),
        ("model", f"{m['backbone']}, weights {m['weights']}, {m['parameters']:,} parameters"),
    ]

"""A tiny model for job tests: untrained weights, a memory block from the catalog's training images."""

import numpy as np
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.model import build_model, save_model
from fsnet.model.memory import value_sums
from fsnet.storage import Storage


def make_model(catalog: Catalog, url: str, storage: Storage, seed: int = 0) -> None:
    """An untrained tiny model with a memory block from the catalog's training images."""
    torch.manual_seed(seed)
    model = build_model(load_config(["tiny"]).model, catalog.schema).eval()
    rows = next(catalog.batches("train", ["image", *catalog.schema.names], batch_size=10_000))
    with torch.no_grad():
        reps = model.embed(decode_batch(list(rows["image"]), 64)).reps
    labels = torch.from_numpy(np.stack([rows[a] for a in catalog.schema.names], axis=1).astype(np.int64))
    model.memory.set_means(*value_sums(reps, labels, catalog.schema.num_values))
    save_model(model, url, storage)


def tiny_catalog_and_model(root) -> dict:
    """A packed 256-image synthetic catalog (tiny preset) under ``root`` and a tiny model for it (a running Ray
    is needed: synth and pack are Ray jobs)."""
    from jobs.pack import pack
    from jobs.synth import synth

    cfg = load_config(["tiny"], ["synthetic.n=256"])
    synth(cfg, str(root / "synth"), show_progress=False)
    pack(load_config(["tiny"], [f"source.path={root / 'synth'}"]), str(root / "catalog"), show_progress=False)
    storage = Storage(cfg.storage)
    make_model(Catalog.open(str(root / "catalog"), storage), str(root / "model.pt"), storage)
    return {"root": root, "catalog": str(root / "catalog"), "model": str(root / "model.pt"), "storage": storage}

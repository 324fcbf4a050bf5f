"""A tiny model for job tests: untrained weights, a memory block from the catalog's training images."""

import shutil
from pathlib import Path

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


def tiny_catalog_and_model(root: Path) -> dict:
    """A packed 256-image synthetic catalog (tiny preset) under ``root`` and a tiny model for it: ``root/synth`` (the
    source), ``root/catalog``, ``root/model.pt``. Made once per test session (synth and pack are Ray jobs: a running
    Ray is needed the first time) and copied for each caller, which may change its copy: ~8 s of Ray jobs each time
    otherwise, for the same bytes (the source, the pack and the model are seeded)."""
    template = root.parent / "tiny-catalog-and-model"  # beside root, in the session's base temporary folder
    if not (template / "model.pt").is_file():
        _make(template)
    for name in ("synth", "catalog"):
        shutil.copytree(template / name, root / name)
    shutil.copy2(template / "model.pt", root / "model.pt")
    storage = Storage(load_config(["tiny"]).storage)
    return {"root": root, "catalog": str(root / "catalog"), "model": str(root / "model.pt"), "storage": storage}


def _make(template: Path) -> None:
    from jobs.pack import pack
    from jobs.synth import synth

    shutil.rmtree(template, ignore_errors=True)  # what an earlier attempt of this session left when it failed
    cfg = load_config(["tiny"], ["synthetic.n=256"])
    synth(cfg, str(template / "synth"), show_progress=False)
    pack(load_config(["tiny"], [f"source.path={template / 'synth'}"]), str(template / "catalog"), show_progress=False)
    storage = Storage(cfg.storage)
    make_model(Catalog.open(str(template / "catalog"), storage), str(template / "model.pt"), storage)

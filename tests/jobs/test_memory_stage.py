"""The memory stage both ways: a small training split embedded in the driver's process (up to index.in_process_max
images) and a larger one by the index's actor pool give the same features and the same memory block; on a cluster
where the pool would be one CPU actor (the tests' two CPUs), a larger split is embedded in the process too."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest

from fsnet.catalog.reader import Catalog
from fsnet.columns import column_array
from fsnet.config import load_config
from fsnet.model import load_model
from fsnet.storage import join
from jobs.memory_stage import memory_stage
from jobs.training_split import TrainingSplit
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = pytest.mark.usefixtures("ray_cluster")


def features_of(out: str, dim: int, attributes: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (N, A, D) reps) of the features a memory stage wrote, in id order."""
    table = pads.dataset(join(out, "features"), format="parquet").to_table(columns=["id", "reps"]).sort_by("id")
    return table["id"].to_numpy(zero_copy_only=False).astype(str), column_array(table, "reps", (attributes, dim))


def test_in_process_and_pool_give_the_same_memory(tmp_path):
    made = tiny_catalog_and_model(tmp_path)
    results = {}
    for way, limit in (("here", 1000), ("pool", 0)):
        cfg = load_config(["tiny"], [f"index.in_process_max={limit}"])
        split = TrainingSplit.of(cfg, Catalog.open(made["catalog"], made["storage"]))
        assert 0 < len(split.fit_ids) <= 1000
        out = str(tmp_path / way)
        memory_stage(cfg, split, made["storage"], out, made["model"], join(out, "memory.pt"))
        model = load_model(join(out, "memory.pt"), made["storage"])
        results[way] = (*features_of(out, cfg.model.embed_dim, len(model.schema.names)), model.memory.table.detach())
    (here_ids, here_reps, here_table), (pool_ids, pool_reps, pool_table) = results["here"], results["pool"]
    assert list(here_ids) == list(pool_ids) == sorted(split.fit_ids)  # the fit images only: no validation image
    np.testing.assert_allclose(here_reps, pool_reps, rtol=1e-4, atol=1e-5)  # one process's threads, or an actor's one
    np.testing.assert_allclose(here_table.numpy(), pool_table.numpy(), rtol=1e-4, atol=1e-5)
    assert here_table.abs().sum() > 0


def test_a_larger_split_is_embedded_in_process_where_the_pool_would_be_one_cpu_actor(tmp_path, monkeypatch):
    import jobs.memory_stage as job
    from jobs.ray_runtime import pool_is_one_cpu_actor

    made = tiny_catalog_and_model(tmp_path)
    cfg = load_config(["tiny"], ["index.in_process_max=1"])  # the split is larger
    assert pool_is_one_cpu_actor(cfg.index.actors)  # 2 CPUs: one actor of two threads
    monkeypatch.setattr(job, "embed_rows", lambda *a, **k: pytest.fail("the actor pool was started"))
    split = TrainingSplit.of(cfg, Catalog.open(made["catalog"], made["storage"]))
    out = str(tmp_path / "run")
    memory_stage(cfg, split, made["storage"], out, made["model"], join(out, "memory.pt"))
    ids, _ = features_of(out, cfg.model.embed_dim, len(split.catalog.schema.names))
    assert list(ids) == sorted(split.fit_ids) and len(ids) > 1

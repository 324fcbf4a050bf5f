"""fsnet index / reindex on a real local Ray, local and S3 storage (search: test_search.py)."""

import hashlib
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fsnet.catalog.manifest import CATALOG_FILE, CatalogManifest
from fsnet.catalog.reader import Catalog
from fsnet.catalog.shard_writer import shard_name
from fsnet.columns import column_array
from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.index.manifest import MANIFEST_FILE, read_current, versions
from fsnet.index.reader import IndexReader
from fsnet.model import load_model
from fsnet.storage import Storage, join
from jobs.index import index
from jobs.pack import pack
from jobs.verify import verify_index
from tests.images import GARBAGE
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ray_cluster):
    return tiny_catalog_and_model(tmp_path_factory.mktemp("index"))


def test_index_holds_the_gallery_as_the_model_sees_it(tiny, location):
    cfg = load_config(["tiny"], location.sets)
    storage = Storage(cfg.storage)
    out = location.url("index")
    result = index(cfg, tiny["model"], tiny["catalog"], out)
    m = result.manifest
    local = Storage(load_config().storage)
    catalog = Catalog.open(tiny["catalog"], local)
    gallery = set(catalog.split_ids("gallery").tolist())
    reader = IndexReader.open(out, storage)
    assert read_current(storage, out) == 1 and m.version == 1
    assert set(reader.ids.tolist()) == gallery and m.indexed == len(gallery) and m.rejected == []
    assert {s.fingerprint for s in m.shards} == {s.fingerprint for s in catalog.manifest.shards}

    # stored representations equal direct model calls on the same images
    model = load_model(tiny["model"], local)
    some = sorted(gallery)[:12]
    stored = reader.embeddings(some, ["id", "reps", "global", "predicted"]).sort_by("id")
    rows = catalog.rows(some, ["id", "image"])
    order = np.argsort(rows["id"])
    with torch.no_grad():
        emb = model.embed(decode_batch([rows["image"][i] for i in order], 64))
        f = model.global_representation(emb.reps)
    assert stored["id"].to_pylist() == sorted(some)
    np.testing.assert_allclose(column_array(stored, "reps", (5, 32)), emb.reps.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(column_array(stored, "global", (-1,)), f.numpy(), rtol=1e-4, atol=1e-5)
    assert (column_array(stored, "predicted", (5,), np.int64) == emb.predicted.numpy()).all()

    assert "memory" not in m.files and not storage.exists(join(out, "v1", "memory.pt"))  # the model.pt holds it
    again = index(cfg, tiny["model"], tiny["catalog"], out)
    assert again.manifest is None and "nothing to do" in again.message and read_current(storage, out) == 1


def test_a_version_with_the_former_memory_copy_still_opens(tiny, tmp_path):
    """Versions written before the index stopped copying the memory block list memory.pt in their files: they
    open, search and verify as they are."""
    storage = Storage(load_config().storage)
    out = str(tmp_path / "index")
    m = index(load_config(["tiny"]), tiny["model"], tiny["catalog"], out).manifest
    model = load_model(tiny["model"], storage)
    memory = io.BytesIO()
    table, counts, num_values = model.memory.table.detach(), model.memory.counts, model.memory.num_values
    torch.save({"table": table, "counts": counts, "num_values": num_values}, memory)  # as index() wrote it
    storage.write_bytes(join(out, "v1", "memory.pt"), memory.getvalue())
    old = m.model_copy(update={"files": {**m.files, "memory": "memory.pt"}})
    storage.write_text(join(out, "v1", MANIFEST_FILE), old.model_dump_json(indent=1))

    reader = IndexReader.open(out, storage)
    assert reader.manifest.files["memory"] == "memory.pt"
    first = reader.ids[0]
    vector = column_array(reader.embeddings([first], ["global"]), "global", (-1,))
    distances, ids = reader.search(vector, 1)
    assert ids[0][0] == first and distances[0][0] < 1e-6
    verdict = verify_index(storage, out)
    assert verdict.problems == [] and "faiss index, ids, memory and" in verdict.summary
    (tmp_path / "index" / "v1" / "memory.pt").unlink()
    assert verify_index(storage, out).problems == [f"{join(out, 'v1', 'memory.pt')}: missing"]


def test_corrupt_bytes_inside_a_shard_are_listed(tiny, tmp_path):
    storage = Storage(load_config().storage)
    catalog_url = str(tmp_path / "catalog")
    fs, _ = storage.fs(catalog_url)
    fs.copy(tiny["catalog"], catalog_url, recursive=True)
    manifest = CatalogManifest.model_validate_json(storage.read_bytes(join(catalog_url, CATALOG_FILE)))
    victim = sorted(Catalog.open(catalog_url, storage).split_ids("gallery").tolist())[0]
    for i, s in enumerate(manifest.shards):  # overwrite the victim's bytes inside its shard, as a bad upload would
        table = pq.read_table(join(catalog_url, s.path))
        if victim not in table["id"].to_pylist():
            continue
        images = [GARBAGE if x == victim else b for x, b in zip(table["id"].to_pylist(), table["image"].to_pylist())]
        table = table.set_column(table.column_names.index("image"), "image", pa.array(images, pa.binary()))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        fingerprint = "sha256:" + hashlib.sha256(data).hexdigest()
        path = shard_name(int(s.path.split("-")[1]), fingerprint)
        storage.write_bytes(join(catalog_url, path), data)
        manifest.shards[i] = s.model_copy(update={"path": path, "fingerprint": fingerprint})
    storage.write_text(join(catalog_url, CATALOG_FILE), manifest.model_dump_json())

    m = index(load_config(["tiny"]), tiny["model"], catalog_url, str(tmp_path / "index")).manifest
    assert [r.id for r in m.rejected] == [victim] and m.rejected[0].reason.startswith("undecodable")
    assert m.indexed == len(Catalog.open(catalog_url, storage).split_ids("gallery")) - 1
    assert victim not in IndexReader.open(str(tmp_path / "index"), storage).ids.tolist()


class Stopped(Exception):
    """A run stopped before it published (the test's before_publish hook)."""


def stop(version: int, live: int | None) -> str:
    raise Stopped(f"stopped before publishing v{version}")


def test_reindex_extracts_only_the_new_shard_and_equals_a_full_index(tiny, tmp_path):
    storage = Storage(load_config().storage)
    full = pd.read_csv(tiny["root"] / "synth" / "labels.csv", dtype=str)
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    for name in full["image"]:
        (source / "images" / name).write_bytes((tiny["root"] / "synth" / "images" / name).read_bytes())
    catalog_url, out = str(tmp_path / "catalog"), str(tmp_path / "index")
    pack_cfg = load_config(["tiny"], [f"source.path={source}"])
    full.iloc[:192].to_csv(source / "labels.csv", index=False)  # three full shards of 64
    pack(pack_cfg, catalog_url, show_progress=False)
    cfg = load_config(["tiny"])
    first = index(cfg, tiny["model"], catalog_url, out, split="all").manifest

    full.to_csv(source / "labels.csv", index=False)  # one more shard of 64
    pack(pack_cfg, catalog_url, show_progress=False)
    with pytest.raises(Stopped):  # interrupted once v2 is written, before CURRENT names it
        index(cfg, tiny["model"], catalog_url, out, split="all", before_publish=stop)
    assert read_current(storage, out) == 1 and versions(storage, out) == [1, 2]
    second = index(cfg, tiny["model"], catalog_url, out, split="all").manifest  # the next run completes
    assert second.version == 2 and read_current(storage, out) == 2 and versions(storage, out) == [1, 2]
    extracted = [s for s in second.shards if s.reused_from is None]
    assert len(extracted) == 1 and extracted[0].rows == 64
    assert {s.fingerprint for s in second.shards if s.reused_from == 1} == {s.fingerprint for s in first.shards}

    pool = load_config(["tiny"], ["index.in_process_max=0"])  # the actor pool, where the re-index embedded its one
    fresh = index(pool, tiny["model"], catalog_url, str(tmp_path / "fresh"), split="all").manifest  # shard itself
    a, b = IndexReader.open(out, storage), IndexReader.open(str(tmp_path / "fresh"), storage)
    assert sorted(a.ids.tolist()) == sorted(b.ids.tolist()) and fresh.indexed == second.indexed == 256
    ea, eb = a.embeddings(columns=["id", "global"]).sort_by("id"), b.embeddings(columns=["id", "global"]).sort_by("id")
    np.testing.assert_allclose(
        column_array(ea, "global", (-1,)), column_array(eb, "global", (-1,)), rtol=1e-5, atol=1e-6
    )


def test_a_repack_that_moves_gallery_images_to_training_leaves_index_manifest_and_verify_in_agreement(tiny, tmp_path):
    """A grown catalog packed with fractions shifts the split's boundary: some gallery images of unchanged shards
    become training images. Their shards are reused, without those rows: every folder holds what the manifest
    counts, each image once, the index holds exactly the gallery, and fsnet verify says all is well."""
    storage = Storage(load_config().storage)
    full = pd.read_csv(tiny["root"] / "synth" / "labels.csv", dtype=str)
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    for name in full["image"]:
        (source / "images" / name).write_bytes((tiny["root"] / "synth" / "images" / name).read_bytes())
    catalog_url, out = str(tmp_path / "catalog"), str(tmp_path / "index")
    pack_cfg = load_config(["tiny"], [f"source.path={source}"])  # split.n_gallery: 0.4 of the images
    full.iloc[:192].to_csv(source / "labels.csv", index=False)
    pack(pack_cfg, catalog_url, show_progress=False)
    before = set(Catalog.open(catalog_url, storage).split_ids("gallery").tolist())
    index(load_config(["tiny"]), tiny["model"], catalog_url, out)

    full.to_csv(source / "labels.csv", index=False)  # 64 more images: the split's boundary moves
    pack(pack_cfg, catalog_url, show_progress=False)
    catalog = Catalog.open(catalog_url, storage)
    gallery = set(catalog.split_ids("gallery").tolist())
    left = before - gallery
    assert left, "the re-pack moved no gallery image to another split: the case is not exercised"
    second = index(load_config(["tiny"]), tiny["model"], catalog_url, out).manifest
    assert any(s.reused_from == 1 for s in second.shards)  # unchanged shards reused, not re-extracted

    reader = IndexReader.open(out, storage)
    rows = reader.embeddings(columns=["id"])["id"].to_pylist()
    assert sorted(rows) == sorted(gallery) and not left & set(rows)  # the index holds the gallery, once each
    assert sorted(reader.ids.tolist()) == sorted(gallery)
    verdict = verify_index(storage, out)
    assert not verdict.problems, verdict.problems

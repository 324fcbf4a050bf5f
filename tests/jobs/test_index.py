"""fsnet index / reindex / search on a real local Ray, local and S3 storage."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fsnet.catalog.manifest import CATALOG_FILE, CatalogManifest
from fsnet.catalog.reader import Catalog
from fsnet.catalog.shard_writer import shard_name
from fsnet.catalog.synthetic import PALETTE, encode_jpeg, render_garment, sample_garment
from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.embedding import column_array
from fsnet.index.manifest import read_current, versions
from fsnet.index.reader import IndexReader
from fsnet.model import build_model, save_model
from fsnet.model.memory import value_sums
from fsnet.storage import Storage, join
from jobs.cli import app
from jobs.index import IndexFault, index
from jobs.pack import pack
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
    model = __import__("fsnet.model", fromlist=["load_model"]).load_model(tiny["model"], local)
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

    again = index(cfg, tiny["model"], tiny["catalog"], out)
    assert again.manifest is None and "nothing to do" in again.message and read_current(storage, out) == 1


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
        fingerprint = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
        path = shard_name(int(s.path.split("-")[1]), fingerprint)
        storage.write_bytes(join(catalog_url, path), data)
        manifest.shards[i] = s.model_copy(update={"path": path, "fingerprint": fingerprint})
    storage.write_text(join(catalog_url, CATALOG_FILE), manifest.model_dump_json())

    m = index(load_config(["tiny"]), tiny["model"], catalog_url, str(tmp_path / "index")).manifest
    assert [r.id for r in m.rejected] == [victim] and m.rejected[0].reason.startswith("undecodable")
    assert m.indexed == len(Catalog.open(catalog_url, storage).split_ids("gallery")) - 1
    assert victim not in IndexReader.open(str(tmp_path / "index"), storage).ids.tolist()


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
    with pytest.raises(IndexFault):  # interrupted after extracting, before publishing
        index(load_config(["tiny"], ["index.fault=before_publish"]), tiny["model"], catalog_url, out, split="all")
    assert read_current(storage, out) == 1 and versions(storage, out) == [1, 2]
    second = index(cfg, tiny["model"], catalog_url, out, split="all").manifest  # the next run completes
    assert second.version == 2 and read_current(storage, out) == 2 and versions(storage, out) == [1, 2]
    extracted = [s for s in second.shards if s.reused_from is None]
    assert len(extracted) == 1 and extracted[0].rows == 64
    assert {s.fingerprint for s in second.shards if s.reused_from == 1} == {s.fingerprint for s in first.shards}

    fresh = index(cfg, tiny["model"], catalog_url, str(tmp_path / "fresh"), split="all").manifest
    a, b = IndexReader.open(out, storage), IndexReader.open(str(tmp_path / "fresh"), storage)
    assert sorted(a.ids.tolist()) == sorted(b.ids.tolist()) and fresh.indexed == second.indexed == 256
    ea, eb = a.embeddings(columns=["id", "global"]).sort_by("id"), b.embeddings(columns=["id", "global"]).sort_by("id")
    np.testing.assert_allclose(
        column_array(ea, "global", (-1,)), column_array(eb, "global", (-1,)), rtol=1e-5, atol=1e-6
    )


@pytest.fixture(scope="module")
def easy(tmp_path_factory, ray_cluster):
    """An easy case: 600 random garments of other shapes (category, sleeve, neckline) than the query, a copy of the
    query and the query in black; a tiny model trained a few hundred steps in a plain loop (this test is about
    index and search; the Ray Train path has its own)."""
    from fsnet.losses import StageLoss
    from fsnet.training import local_step, trainable

    root = tmp_path_factory.mktemp("easy")
    (root / "src" / "images").mkdir(parents=True)
    query = sample_garment(7, 0)
    shape = [query.labels[a] for a in ("category", "sleeve", "neckline")]
    garments = [
        g
        for g in (sample_garment(1, i) for i in range(900))
        if [g.labels[a] for a in ("category", "sleeve", "neckline")] != shape
    ][:600]
    target = dataclasses.replace(query, labels={**query.labels, "color": "black"}, color=PALETTE["black"])
    rows = []
    for name, g, noise in [
        *((f"g{i:04d}", g, 0) for i, g in enumerate(garments)),
        ("query-copy", query, 5),
        ("target", target, 0),
    ]:
        (root / "src" / "images" / f"{name}.jpg").write_bytes(
            encode_jpeg(render_garment(g, 64, np.random.default_rng(noise)).image, 90)
        )
        rows.append({"image": f"{name}.jpg", **g.labels})
    pd.DataFrame(rows).to_csv(root / "src" / "labels.csv", index=False)
    (root / "query.jpg").write_bytes(encode_jpeg(render_garment(query, 64, np.random.default_rng(0)).image, 90))
    pack(load_config(["tiny"], [f"source.path={root / 'src'}"]), str(root / "catalog"), show_progress=False)

    storage = Storage(load_config().storage)
    catalog = Catalog.open(str(root / "catalog"), storage)
    cfg = load_config(["tiny"], ["model.variant=rank_l"])
    data = next(catalog.batches(None, ["image", *catalog.schema.names], batch_size=10_000))
    images = decode_batch(list(data["image"]), 64)
    labels = torch.from_numpy(np.stack([data[a] for a in catalog.schema.names], axis=1).astype(np.int64))
    torch.manual_seed(0)
    model = build_model(cfg.model, catalog.schema)
    for stage, steps in [(1, 300), (2, 600)]:
        optimizer = torch.optim.SGD(trainable(model, stage), lr=0.05 if stage == 1 else 0.01, momentum=0.9)
        loss_fn = StageLoss(getattr(cfg.train, f"stage{stage}"), model.variant)
        generator = torch.Generator().manual_seed(stage)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(images), (32,), generator=generator)
            loss, _ = local_step(model, images[idx], labels[idx], loss_fn)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        model.memory.set_means(*value_sums(model.embed(images).reps, labels, catalog.schema.num_values))
    save_model(model, str(root / "model.pt"), storage)
    index(
        load_config(["tiny"], ["model.variant=rank_l"]),
        str(root / "model.pt"),
        str(root / "catalog"),
        str(root / "index"),
        split="all",
    )
    return root


def first_id(output: str) -> str:
    return [line.split("│")[2].strip() for line in output.splitlines() if line.startswith("│")][0]


def test_search_cli_returns_the_manipulated_target_first(easy):
    runner = CliRunner()
    base = ["search", "--index", str(easy / "index"), "--image", str(easy / "query.jpg"), "-k", "5"]
    plain = runner.invoke(app, base, terminal_width=200)
    assert plain.exit_code == 0, plain.output
    assert first_id(plain.output) == "query-copy"  # unchanged: the query's own copy
    out = runner.invoke(
        app, [*base, "--set", "color=black", "--explain", str(easy / "explain.png")], terminal_width=200
    )
    assert out.exit_code == 0, out.output
    assert first_id(out.output) == "target", out.output  # color -> black: the query in black
    assert "color=black*" in out.output
    assert Image.open(easy / "explain.png").size[0] > 400


def test_search_by_id_and_unknown_values(easy):
    out = CliRunner().invoke(
        app,
        ["search", "--index", str(easy / "index"), "--id", "query-copy", "--set", "color=black", "-k", "3"],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    assert first_id(out.output) == "target"
    run = subprocess.run(
        [sys.executable, "-m", "jobs.search", "--index", str(easy / "index"), "--id", "target", "--set", "color=navy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1
    assert (
        "unknown value 'navy' of attribute 'color' (values: black, blue, green, orange, purple, red, white, yellow)"
        in lines[0]
    )

"""The pack job on a real local Ray, writing to a local folder and to S3 (moto)."""

import io
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.errors import SourceError
from fsnet.storage import Storage, join
from jobs.pack import pack
from tests.fashion_like import ATTRIBUTE_VALUES, write_fashion_like
from tests.images import GARBAGE, image_bytes, truncated

pytestmark = pytest.mark.usefixtures("ray_cluster")

SMALL = ["catalog.shard_rows=16", "catalog.row_group_rows=8", "split.n_query=0.2", "split.n_gallery=0.4"]


def config(location, source_url, *sets):
    return load_config(["fashion_product_small"], [f"source.path={source_url}", *SMALL, *location.sets, *sets])


def test_round_trip(location):
    cfg = config(location, location.url("src"))
    storage = Storage(cfg.storage)
    frame = write_fashion_like(storage, location.url("src"), n=40)
    out = location.url("catalog")
    result = pack(cfg, out, show_progress=False)

    catalog = Catalog.open(out, storage)
    m = catalog.manifest
    assert m.rows == 40 and [s.rows for s in m.shards] == [16, 16, 8]
    assert all(re.fullmatch(r"shards/part-\d{5}-[0-9a-f]{12}\.parquet", s.path) for s in m.shards)
    assert catalog.schema.names == list(ATTRIBUTE_VALUES) and m.extra_columns == ["year"]
    assert catalog.verify() == []

    rows = pd.concat([pd.DataFrame(b) for b in catalog.batches(batch_size=7)], ignore_index=True)
    assert rows["id"].tolist() == [n.removesuffix(".jpg") for n in frame["image"]]
    for i, name in enumerate(frame["image"]):
        assert rows["image"][i] == storage.read_bytes(join(location.url("src"), "images", name))  # identical bytes
    for attr in ATTRIBUTE_VALUES:  # indices decode back to the names of labels.csv
        assert [catalog.schema.value_name(attr, int(v)) for v in rows[attr]] == frame[attr].tolist()
        assert sum(m.value_counts[attr]) == 40
    assert rows["year"].tolist() == frame["year"].tolist()
    assert set(zip(rows["width"], rows["height"])) == {(60, 80), (53, 80)}

    query, gallery, train = (set(catalog.split_ids(s)) for s in ("query", "gallery", "train"))
    assert (len(query), len(gallery), len(train)) == (8, 16, 16)
    assert not (query & gallery) and not (query & train) and not (gallery & train)
    assert m.splits.counts == {"train": 16, "query": 8, "gallery": 16}
    gallery_batch = next(catalog.batches("gallery", ["id", "gender"], batch_size=100))
    assert set(gallery_batch["id"]) == gallery and gallery_batch["gender"].dtype == np.int16

    # The same split through Ray Data (projected columns, id filter pushed into the scan).
    ds_rows = catalog.dataset("query", ["id", "season"]).take_all()
    assert {r["id"] for r in ds_rows} == query and set(ds_rows[0]) == {"id", "season"}

    saved = storage.read_text(join(out, "config.yaml"))
    assert yaml.safe_load(saved)["source"]["path"] == location.url("src")
    if location.kind == "s3":
        from tests.conftest import S3_KEY, S3_SECRET

        for text in (saved, storage.read_text(join(out, "catalog.json"))):
            assert S3_SECRET not in text and S3_KEY not in text
    assert result.rows_in == 40


def test_bad_images_are_skipped_counted_and_listed(location):
    cfg = config(location, location.url("src"))
    storage = Storage(cfg.storage)
    frame = write_fashion_like(storage, location.url("src"), n=40)
    images = location.url("src/images")
    broken = {
        frame["image"][3]: ("truncated", truncated(storage.read_bytes(join(images, frame["image"][3])))),
        frame["image"][17]: ("undecodable", GARBAGE),
        frame["image"][18]: ("empty", b""),
        frame["image"][30]: ("unsupported_format", image_bytes(20, 20, "GIF")),
    }
    for name, (_, data) in broken.items():
        storage.write_bytes(join(images, name), data)
    storage.remove(join(images, frame["image"][39]))
    expected = {n.removesuffix(".jpg"): r for n, (r, _) in broken.items()} | {
        frame["image"][39].removesuffix(".jpg"): "missing"
    }

    out = location.url("catalog")
    pack(cfg, out, show_progress=False)
    catalog = Catalog.open(out, storage)
    rejected = pd.read_csv(io.BytesIO(storage.read_bytes(join(out, "rejected.csv"))), dtype=str)
    assert dict(zip(rejected["id"], rejected["reason"])) == expected
    assert rejected.set_index("id").loc[frame["image"][39].removesuffix(".jpg"), "detail"].startswith("no file at")
    m = catalog.manifest
    assert m.rows == 35 and m.rejected.count == 5
    assert m.rejected.by_reason == {"truncated": 1, "undecodable": 1, "empty": 1, "unsupported_format": 1, "missing": 1}
    ids = {i for b in catalog.batches(columns=["id"]) for i in b["id"]}
    assert len(ids) == 35 and not ids & set(expected)
    assert sum(m.splits.counts.values()) == 35


def test_duplicate_ids_write_nothing(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (src / "images" / name).write_bytes(image_bytes())
    (src / "labels.csv").write_text("image,color\na.jpg,red\nb.jpg,blue\na.jpg,green\n")
    cfg = load_config(sets=[f"source.path={src}", "split.n_query=0.3", "split.n_gallery=0.3"])
    with pytest.raises(SourceError, match=r"1 duplicate id\(s\): 'a'.*nothing was written"):
        pack(cfg, str(tmp_path / "out"), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_repack_replaces_the_catalog(location):
    cfg = config(location, location.url("src"))
    storage = Storage(cfg.storage)
    frame = write_fashion_like(storage, location.url("src"), n=40)
    out = location.url("catalog")
    first = pack(cfg, out, show_progress=False).manifest
    again = pack(cfg, out, show_progress=False).manifest
    assert [s.path for s in again.shards] == [s.path for s in first.shards]  # same input, same files

    frame.loc[20, "season"] = "Winter" if frame.loc[20, "season"] != "Winter" else "Summer"  # shard 1 changes
    storage.write_text(join(location.url("src"), "labels.csv"), frame.iloc[:35].to_csv(index=False))  # shard 2 shrinks
    manifest = pack(cfg, out, show_progress=False).manifest
    assert manifest.shards[0].path == first.shards[0].path
    assert manifest.shards[1].path != first.shards[1].path and manifest.shards[2].path != first.shards[2].path
    catalog = Catalog.open(out, storage)
    assert catalog.verify() == [] and catalog.manifest.rows == 35
    # files no catalog.json names are gone
    assert sorted(f"shards/{n}" for n in storage.listdir(join(out, "shards"))) == sorted(
        s.path for s in manifest.shards
    )
    assert [n for n in storage.listdir(out) if n.startswith("splits-")] == [manifest.splits.path]


def test_split_that_does_not_fit_stops_before_writing(tmp_path):
    storage = Storage(load_config().storage)
    write_fashion_like(storage, str(tmp_path / "src"), n=20)
    cfg = load_config(["fashion_product_small"], [f"source.path={tmp_path / 'src'}"])  # 2,000 + 18,000 of 20
    with pytest.raises(Exception, match="use fractions for small catalogs"):
        pack(cfg, str(tmp_path / "out"), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "labels.csv").write_text("image,color\na.jpg,red\na.jpg,blue\n")
    run = subprocess.run(
        [sys.executable, "-m", "jobs.pack", "--source", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "duplicate id" in lines[0], run.stderr

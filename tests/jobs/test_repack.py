"""Re-packing a grown catalog to the same URL: old value codes and old shard files are kept, so that a re-index
extracts only the new shards (fsnet/catalog/repack.py). On a real local Ray, to a local folder and to S3 (moto)."""

import pandas as pd
import pytest

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.errors import CatalogError
from fsnet.storage import Storage, join
from jobs.pack import pack
from tests.fashion_like import ATTRIBUTE_VALUES, write_fashion_like
from tests.images import image_bytes

pytestmark = pytest.mark.usefixtures("ray_cluster")

SMALL = ["catalog.shard_rows=16", "catalog.row_group_rows=8", "split.n_query=0.2", "split.n_gallery=0.4"]


def config(location, source_url, *sets):
    return load_config(["fashion_product_small"], [f"source.path={source_url}", *SMALL, *location.sets, *sets])


def decoded(catalog: Catalog) -> pd.DataFrame:
    """The catalog's rows with value names instead of codes, by id."""
    rows = pd.concat([pd.DataFrame(b) for b in catalog.batches(columns=["id", *ATTRIBUTE_VALUES])], ignore_index=True)
    for attr in ATTRIBUTE_VALUES:
        rows[attr] = [catalog.schema.value_name(attr, int(v)) for v in rows[attr]]
    return rows.set_index("id").sort_index()


def test_adding_one_percent_adds_one_shard_and_keeps_every_old_one(location):
    cfg = config(location, location.url("src"))
    storage = Storage(cfg.storage)
    src, out = location.url("src"), location.url("catalog")
    frame = write_fashion_like(storage, src, n=200)
    first = pack(cfg, out, show_progress=False)
    old = first.manifest
    assert len(old.shards) == 13 and first.shards_kept == 0
    assert all(
        a.values == sorted(ATTRIBUTE_VALUES[a.name]) for a in old.attributes
    )  # a fresh pack: as the source gives them

    # 1% more: two new products inserted in the middle of the label table, one in a colour never seen before
    # ("Beige" sorts before every old colour: sorted codes would move all of them).
    new = pd.DataFrame(
        [
            {**frame.iloc[0].to_dict(), "image": "20001.jpg", "baseColour": "Beige"},
            {**frame.iloc[1].to_dict(), "image": "20002.jpg"},
        ]
    )
    for k, name in enumerate(new["image"]):
        storage.write_bytes(join(src, "images", name), image_bytes(60, 80, "JPEG", seed=1000 + k))
    grown = pd.concat(
        [frame.iloc[:50], new.iloc[:1], frame.iloc[50:120], new.iloc[1:], frame.iloc[120:]], ignore_index=True
    )
    storage.write_text(join(src, "labels.csv"), grown.to_csv(index=False))

    again = pack(cfg, out, show_progress=False)
    m = again.manifest
    old_paths = [s.path for s in old.shards]
    assert [s.path for s in m.shards[:13]] == old_paths  # every old shard file, same fingerprint
    assert [s.fingerprint for s in m.shards[:13]] == [s.fingerprint for s in old.shards]
    assert len(m.shards) == 14 and m.shards[13].rows == 2 and m.shards[13].path.startswith("shards/part-00013-")
    assert again.shards_kept == 13 and m.rows == 202
    colours = next(a for a in m.attributes if a.name == "baseColour").values
    old_colours = next(a for a in old.attributes if a.name == "baseColour").values
    assert colours == [*old_colours, "Beige"]  # old codes kept, the new value next
    assert [a for a in m.attributes if a.name != "baseColour"] == [a for a in old.attributes if a.name != "baseColour"]
    assert m.value_counts["baseColour"][-1] == 1

    catalog = Catalog.open(out, storage)
    assert catalog.verify() == []
    assert sorted(f"shards/{n}" for n in storage.listdir(join(out, "shards"))) == sorted(s.path for s in m.shards)
    expected = (
        grown.assign(id=grown["image"].str.removesuffix(".jpg")).set_index("id").sort_index()[list(ATTRIBUTE_VALUES)]
    )
    pd.testing.assert_frame_equal(decoded(catalog), expected, check_names=False)  # every label reads back by name


def test_reordered_table_keeps_shards_and_a_vanished_value_keeps_its_code(location):
    cfg = config(location, location.url("src"))
    storage = Storage(cfg.storage)
    src, out = location.url("src"), location.url("catalog")
    frame = write_fashion_like(storage, src, n=64)
    old = pack(cfg, out, show_progress=False).manifest

    storage.write_text(join(src, "labels.csv"), frame.sample(frac=1.0, random_state=3).to_csv(index=False))
    shuffled = pack(cfg, out, show_progress=False)  # rows go back to their shard, in its order
    assert [s.path for s in shuffled.manifest.shards] == [s.path for s in old.shards] and shuffled.shards_kept == 4

    gone = frame["usage"] == "Formal"  # every Formal product leaves the catalog
    storage.write_text(join(src, "labels.csv"), frame[~gone].to_csv(index=False))
    m = pack(cfg, out, show_progress=False).manifest
    usage = next(a for a in m.attributes if a.name == "usage")
    assert usage == next(a for a in old.attributes if a.name == "usage")  # "Formal" keeps its place
    assert m.value_counts["usage"][usage.values.index("Formal")] == 0 and m.rows == int((~gone).sum())
    lost = {i // 16 for i in gone.to_numpy().nonzero()[0]}  # shards that lost rows are rewritten, the others kept
    for i, (before, after) in enumerate(zip(old.shards, m.shards)):
        assert (before.path == after.path) == (i not in lost)
    catalog = Catalog.open(out, storage)
    assert catalog.verify() == []
    assert (decoded(catalog)["usage"] != "Formal").all()


@pytest.mark.parametrize("change", ["drop", "add"])
def test_an_attribute_added_or_missing_is_one_line_and_changes_nothing(tmp_path, change):
    cfg = load_config(["fashion_product_small"], [f"source.path={tmp_path / 'src'}", *SMALL])
    storage = Storage(cfg.storage)
    frame = write_fashion_like(storage, str(tmp_path / "src"), n=40)
    out = str(tmp_path / "catalog")
    pack(cfg, out, show_progress=False)
    before = (tmp_path / "catalog" / "catalog.json").read_text()

    changed = frame.drop(columns=["usage"]) if change == "drop" else frame.assign(fit=["Slim", "Regular"] * 20)
    (tmp_path / "src" / "labels.csv").write_text(changed.to_csv(index=False))
    what = (
        "attribute 'usage' is in the catalog but not in the source"
        if change == "drop"
        else "the source has attribute 'fit', the catalog does not"
    )
    with pytest.raises(
        CatalogError, match=rf"^{tmp_path / 'catalog' / 'catalog.json'}: {what}; .*pack to a new URL"
    ) as err:
        pack(cfg, out, show_progress=False)
    assert "\n" not in str(err.value)
    assert (tmp_path / "catalog" / "catalog.json").read_text() == before and Catalog.open(out, storage).verify() == []


def test_a_damaged_or_missing_shard_is_written_again(tmp_path):
    cfg = load_config(["fashion_product_small"], [f"source.path={tmp_path / 'src'}", *SMALL])
    storage = Storage(cfg.storage)
    write_fashion_like(storage, str(tmp_path / "src"), n=48)
    out = str(tmp_path / "catalog")
    old = pack(cfg, out, show_progress=False).manifest
    (tmp_path / "catalog" / old.shards[0].path).write_bytes(b"not parquet")  # unreadable, footer included
    (tmp_path / "catalog" / old.shards[1].path).unlink()
    m = pack(cfg, out, show_progress=False).manifest
    assert m.shards[0].path == old.shards[2].path and m.rows == 48  # the intact shard kept, the other rows written anew
    assert {s.rows for s in m.shards[1:]} == {16} and len(m.shards) == 3
    catalog = Catalog.open(out, storage)
    assert catalog.verify() == [] and len(decoded(catalog)) == 48
    assert sorted(f"shards/{n}" for n in storage.listdir(join(out, "shards"))) == sorted(s.path for s in m.shards)


def test_a_shard_damaged_but_readable_is_repaired_in_place(tmp_path):
    """A flipped byte inside an image keeps the Parquet file readable but no longer matches its name: the re-pack
    writes the shard again (same name: the same rows), and the catalog verifies."""
    cfg = load_config(["fashion_product_small"], [f"source.path={tmp_path / 'src'}", *SMALL])
    storage = Storage(cfg.storage)
    write_fashion_like(storage, str(tmp_path / "src"), n=32)
    out = str(tmp_path / "catalog")
    old = pack(cfg, out, show_progress=False).manifest
    shard = tmp_path / "catalog" / old.shards[0].path
    data = bytearray(shard.read_bytes())
    at = data.index(b"\xff\xd8\xff") + 200  # inside the first JPEG (stored uncompressed)
    data[at] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert [bad for bad in Catalog.open(out, storage).verify()]  # damaged
    m = pack(cfg, out, show_progress=False).manifest
    assert [s.path for s in m.shards] == [s.path for s in old.shards]
    assert Catalog.open(out, storage).verify() == []

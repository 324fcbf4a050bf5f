import pandas as pd
import pytest

from fsnet.catalog.sources import read_source
from fsnet.config import load_config
from fsnet.errors import SourceError
from fsnet.storage import Storage, join
from tests.fashion_like import ATTRIBUTE_VALUES, write_fashion_like


def source_of(location, url, *sets):
    cfg = load_config(["fashion_product_small"], [f"source.path={url}", *location.sets, *sets])
    return read_source(cfg.source, Storage(cfg.storage))


def test_fashion_like_folder(location):
    storage = Storage(load_config(sets=location.sets).storage)
    url = location.url("fps")
    frame = write_fashion_like(storage, url, n=30)
    src = source_of(location, url)
    assert src.schema.names == list(ATTRIBUTE_VALUES)
    assert src.extra_columns == ["year"]
    t = src.table
    assert t["id"].to_pylist() == [name.removesuffix(".jpg") for name in frame["image"]]
    assert t["image_url"][0].as_py() == join(url, "images", frame["image"][0])
    for attr in ATTRIBUTE_VALUES:
        values = src.schema.attributes[src.schema.index(attr)].values
        assert values == sorted(set(frame[attr]))
        assert [values[i] for i in t[attr].to_pylist()] == frame[attr].tolist()
    assert t["year"].to_pylist() == frame["year"].tolist()


def write_table(tmp_path, text: str):
    (tmp_path / "labels.csv").write_text(text)
    return str(tmp_path)


def test_unknown_values_become_minus_one(tmp_path):
    url = write_table(
        tmp_path, "image,color,size\na.jpg,red,S\nb.jpg,NA,M\nc.jpg,,L\nd.jpg,Unknown,undefined\ne.jpg,blue,S\n"
    )
    src = read_source(load_config(sets=[f"source.path={url}"]).source, Storage(load_config().storage))
    assert src.schema.attributes[0].values == ["blue", "red"]
    assert src.table["color"].to_pylist() == [1, -1, -1, -1, 0]
    assert src.schema.attributes[1].values == ["L", "M", "S"]
    assert src.table["size"].to_pylist() == [2, 1, 0, -1, 2]


def test_attribute_selection_ignore_and_globs(tmp_path):
    url = write_table(
        tmp_path, "file,uid,a,b,note,box_a,box_b\nx.png,u1,1,p,hi,0 0 1 1,0 0 2 2\ny.png,u2,2,q,yo,1 1 2 2,0 0 3 3\n"
    )
    base = [f"source.path={url}", "source.image_column=file", "source.id_column=uid"]
    src = read_source(
        load_config(sets=[*base, "source.ignore=[note]", "source.extra=['box_*']"]).source,
        Storage(load_config().storage),
    )
    assert src.schema.names == ["a", "b"] and src.extra_columns == ["box_a", "box_b"]
    assert src.table["id"].to_pylist() == ["u1", "u2"]
    src = read_source(load_config(sets=[*base, "source.attributes=[b]"]).source, Storage(load_config().storage))
    assert src.schema.names == ["b"]


@pytest.mark.parametrize(
    "text, sets, message",
    [
        ("image,a\nx.jpg,1\ny.jpg,2\nx.jpg,3\n", [], r"1 duplicate id\(s\): 'x'"),
        ("image,a\nx.jpg,1\nx.png,2\n", [], r"duplicate id\(s\): 'x'"),
        ("image,a\nx.jpg,1\n", ["source.attributes=[a, colour]"], r"attribute column\(s\) 'colour' do not exist"),
        ("image,a\nx.jpg,1\n", ["source.ignore=[year]"], r"no column 'year' \(source.ignore\)"),
        ("file,a\nx.jpg,1\n", [], r"no column 'image' \(source.image_column\)"),
        ("image,width\nx.jpg,1\n", [], r"width would shadow the shard columns"),
        ("image,a\nx.jpg,NA\n", [], r"column 'a' has no known value"),
        ("image\nx.jpg\n", [], r"no attribute columns left"),
    ],
)
def test_bad_tables_give_one_error_naming_it(tmp_path, text, sets, message):
    url = write_table(tmp_path, text)
    with pytest.raises(SourceError, match=message) as err:
        read_source(load_config(sets=[f"source.path={url}", *sets]).source, Storage(load_config().storage))
    assert "labels.csv" in str(err.value)


def test_missing_table_and_path(tmp_path):
    with pytest.raises(SourceError, match="labels.csv: label table not found"):
        read_source(load_config(sets=[f"source.path={tmp_path}"]).source, Storage(load_config().storage))
    with pytest.raises(SourceError, match="source.path is not set"):
        read_source(load_config().source, Storage(load_config().storage))


def test_parquet_table_with_nulls(tmp_path):
    pd.DataFrame({"image": ["a.jpg", "b.jpg"], "color": ["red", None], "n": [3, 4]}).to_parquet(
        tmp_path / "labels.parquet"
    )
    cfg = load_config(sets=[f"source.path={tmp_path}", "source.table=labels.parquet", "source.extra=[n]"])
    src = read_source(cfg.source, Storage(cfg.storage))
    assert src.table["color"].to_pylist() == [0, -1]
    assert src.table["n"].to_pylist() == [3, 4]  # extras keep their type

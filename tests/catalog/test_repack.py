"""The re-pack rules on their own (fsnet/catalog/repack.py): append-only shard assignment and kept value codes."""

import numpy as np
import pyarrow as pa
import pytest

from fsnet.catalog.repack import PreviousShard, assign_shards, keep_codes
from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.catalog.sources.base import SourceProtocol, build_source_table
from fsnet.errors import CatalogError


def groups(ids, shard_rows, previous):
    return [(index, [ids[p] for p in rows]) for index, rows in assign_shards(ids, shard_rows, previous)]


def test_a_fresh_pack_slices_in_table_order():
    ids = [f"i{n}" for n in range(7)]
    assert groups(ids, 3, []) == [(0, ["i0", "i1", "i2"]), (1, ["i3", "i4", "i5"]), (2, ["i6"])]


def test_old_ids_go_back_to_their_shard_in_its_order_and_new_ids_fill_new_shards():
    previous = [PreviousShard(index=4, ids=["d", "e"]), PreviousShard(index=0, ids=["b", "a", "c"])]
    ids = ["x", "a", "b", "y", "c", "z", "e", "w"]  # new ids x, y, z, w anywhere; d is gone
    assert groups(ids, 3, previous) == [(0, ["b", "a", "c"]), (4, ["e"]), (5, ["x", "y", "z"]), (6, ["w"])]
    assert groups(["a", "b"], 3, previous) == [(0, ["b", "a"])]  # shard 4 lost every row: no shard 4


def test_an_id_in_two_previous_shards_is_refused():
    with pytest.raises(CatalogError, match="3 rows placed for 2"):
        assign_shards(["a", "b"], 2, [PreviousShard(0, ["a", "b"]), PreviousShard(1, ["a"])])


def source(schema_values: dict[str, list[str]], labels: dict[str, list[int]], protocol=None):
    n = len(next(iter(labels.values())))
    ids = [f"i{k}" for k in range(n)]
    table = build_source_table(
        origin="labels.csv",
        ids=ids,
        images=[f"{i}.jpg" for i in ids],
        image_urls=[f"/x/{i}.jpg" for i in ids],
        labels={a: np.array(v) for a, v in labels.items()},
        schema=AttributeSchema(attributes=[Attribute(name=a, values=v) for a, v in schema_values.items()]),
    )
    table.protocol = protocol
    return table


def test_codes_are_kept_new_values_appended_and_attributes_in_the_catalogs_order():
    previous = AttributeSchema(
        attributes=[
            Attribute(name="color", values=["black", "red", "white"]),
            Attribute(name="size", values=["S", "M"]),
        ]
    )
    protocol = SourceProtocol(
        query=np.array(["i0"]), change=np.array([[-1, 0]], np.int16), target=np.array([[0, 1]], np.int16), source="t"
    )
    # The source lists size first and sorts its own colours, with "blue" new and "white" gone.
    src = source(
        {"size": ["M", "S"], "color": ["black", "blue", "red"]}, {"size": [0, 1, -1], "color": [2, 1, 0]}, protocol
    )
    kept = keep_codes(src, previous, "s3://b/cat")
    assert kept.schema.names == ["color", "size"]
    assert kept.schema.attributes[0].values == ["black", "red", "white", "blue"]
    assert kept.schema.attributes[1].values == ["S", "M"]
    assert kept.table["color"].to_pylist() == [1, 3, 0]  # red, blue, black
    assert kept.table["size"].to_pylist() == [1, 0, -1] and kept.table["size"].type == pa.int16()
    assert kept.protocol.change.tolist() == [[0, -1]] and kept.protocol.target.tolist() == [
        [3, 1]
    ]  # columns reordered too


def test_an_attribute_on_one_side_only_names_it_and_the_catalog():
    previous = AttributeSchema(
        attributes=[Attribute(name="color", values=["red"]), Attribute(name="size", values=["S"])]
    )
    with pytest.raises(
        CatalogError, match=r"^s3://b/cat/catalog.json: attribute 'size' is in the catalog but not in the source"
    ):
        keep_codes(source({"color": ["red"]}, {"color": [0]}), previous, "s3://b/cat")

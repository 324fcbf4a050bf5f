"""The real catalog: ../shared/data/fashion-product-small packed as it is, to a local folder and to S3."""

from pathlib import Path

import pandas as pd
import pytest

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.storage import Storage
from jobs.pack import pack

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fashion-product-small"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_cluster"),
    pytest.mark.skipif(not (DATA / "labels.csv").exists(), reason=f"{DATA} is not on this machine"),
]


def test_fashion_product_small(location):
    cfg = load_config(["fashion_product_small"], [f"source.path={DATA}", *location.sets])
    out = location.url("fps")
    result = pack(cfg, out, show_progress=False)
    labels = pd.read_csv(DATA / "labels.csv", dtype=str, keep_default_na=False)
    m = Catalog.open(out, Storage(cfg.storage)).manifest
    assert m.rows == len(labels) == 37735 and m.rejected.count == 0
    assert [a.name for a in m.attributes] == [
        "gender",
        "masterCategory",
        "subCategory",
        "articleType",
        "baseColour",
        "season",
        "usage",
    ]
    for a in m.attributes:
        assert dict(zip(a.values, m.value_counts[a.name])) == labels[a.name].value_counts().to_dict()
    assert m.splits.counts == {"train": 17735, "query": 2000, "gallery": 18000}
    assert result.rows_in == 37735

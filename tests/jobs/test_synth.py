"""fsnet synth renders through Ray Data to a folder that fsnet pack takes like any other source."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsnet.catalog.reader import Catalog
from fsnet.catalog.synthetic import ATTRIBUTES, encode_jpeg, parse_box, render_garment, sample_garment
from fsnet.config import load_config
from fsnet.storage import Storage, join
from jobs.pack import pack
from jobs.synth import synth

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_synth_then_pack(location):
    out, catalog_url = location.url("synth"), location.url("catalog")
    cfg = load_config(["tiny"], ["synthetic.n=150", "synthetic.size=48", "synthetic.seed=4", *location.sets])
    storage = Storage(cfg.storage)
    synth(cfg, out, show_progress=False)

    labels = pd.read_csv(io.BytesIO(storage.read_bytes(join(out, "labels.csv"))), dtype=str)
    assert len(labels) == 150 and list(labels.columns) == ["image", *ATTRIBUTES, *(f"box_{a}" for a in ATTRIBUTES)]
    for i in (0, 77, 149):  # rows and pixels are the pure function of (seed, index)
        garment = sample_garment(4, i)
        assert labels.loc[i, list(ATTRIBUTES)].to_dict() == garment.labels
        rendered = render_garment(garment, 48, np.random.default_rng([4, i, 1]))
        assert storage.read_bytes(join(out, "images", labels.loc[i, "image"])) == encode_jpeg(rendered.image, 90)
        assert parse_box(labels.loc[i, "box_sleeve"]) == rendered.boxes["sleeve"]

    pack(load_config(["tiny"], [f"source.path={out}", *location.sets]), catalog_url, show_progress=False)
    catalog = Catalog.open(catalog_url, storage)
    assert catalog.schema.names == list(ATTRIBUTES)
    assert catalog.manifest.extra_columns == [f"box_{a}" for a in ATTRIBUTES]
    assert catalog.manifest.rows == 150 and catalog.manifest.rejected.count == 0
    first = next(catalog.batches(columns=["id", "image", "width", "box_neckline"], batch_size=5))
    assert Image.open(io.BytesIO(first["image"][0])).size == (48, 48) and first["width"][0] == 48
    assert first["box_neckline"][0] == labels.loc[0, "box_neckline"]


def test_synth_first_grows_the_folder_as_one_render_would(tmp_path):
    """--first F renders indices F.. and merges their rows: the same labels.csv and images as one render of all."""

    def cfg(n):
        return load_config(["tiny"], ["synthetic.size=32", f"synthetic.n={n}"])

    storage = Storage(cfg(1).storage)
    synth(cfg(30), str(tmp_path / "all"), show_progress=False)
    synth(cfg(20), str(tmp_path / "grown"), show_progress=False)
    synth(cfg(10), str(tmp_path / "grown"), show_progress=False, first=20)
    assert (tmp_path / "grown" / "labels.csv").read_text() == (tmp_path / "all" / "labels.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "grown" / "images").iterdir()) == [f"{i:06d}.jpg" for i in range(30)]
    assert (tmp_path / "grown" / "images" / "000025.jpg").read_bytes() == storage.read_bytes(
        str(tmp_path / "all" / "images" / "000025.jpg")
    )

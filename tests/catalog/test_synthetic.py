"""The synthetic catalog's labels agree with its pixels, and each region box holds its part."""

import io

import numpy as np
import pytest
from PIL import Image

from fsnet.catalog.synthetic import (
    ATTRIBUTES,
    PALETTE,
    PART_NECK,
    PART_SLEEVE,
    PART_TORSO,
    encode_jpeg,
    render_garment,
    sample_garment,
)

SEED = 5


def rendered(index, size=96):
    g = sample_garment(SEED, index)
    r = render_garment(g, size, np.random.default_rng([SEED, index, 1]))
    decoded = np.asarray(Image.open(io.BytesIO(encode_jpeg(r.image, 90))).convert("RGB")).astype(int)
    return g, r, decoded


def nearest_colour(rgb):
    return min(PALETTE, key=lambda name: sum((a - b) ** 2 for a, b in zip(PALETTE[name], rgb)))


def test_deterministic_for_a_seed():
    a, b = rendered(3), rendered(3)
    assert a[0] == b[0] and np.array_equal(a[1].image, b[1].image)
    assert sample_garment(SEED, 3) != sample_garment(SEED + 1, 3)


def test_every_value_occurs():
    seen = {a: set() for a in ATTRIBUTES}
    for i in range(300):
        for a, v in sample_garment(SEED, i).labels.items():
            seen[a].add(v)
    assert seen == {a: set(v) for a, v in ATTRIBUTES.items()}


@pytest.mark.parametrize("index", range(40))
def test_labels_agree_with_pixels(index):
    g, r, pixels = rendered(index)
    torso = r.parts == PART_TORSO
    # colour: the torso's median colour (pattern under 40%) is the label's palette colour, after JPEG
    assert nearest_colour(np.median(pixels[torso], axis=0)) == g.labels["color"]
    # sleeves: sleeve pixels exist iff the garment has sleeves, and they carry the garment's colour
    sleeves = r.parts == PART_SLEEVE
    assert sleeves.any() == (g.labels["sleeve"] != "none")
    if sleeves.any():
        assert nearest_colour(np.median(pixels[sleeves], axis=0)) == g.labels["color"]
    # pattern: solid torsos are flat; patterned ones are not
    spread = np.abs(pixels[torso] - np.median(pixels[torso], axis=0)).sum(axis=1)
    busy = (spread > 60).mean()
    assert (busy > 0.12) == (g.labels["pattern"] != "solid"), busy
    # neckline: a high collar rises above the shoulders in the garment's colour; a cut shows the darker inside
    neck = r.parts == PART_NECK
    rises = np.flatnonzero(neck.any(axis=1)).min() < np.flatnonzero(torso.any(axis=1)).min() - 1
    assert rises == (g.labels["neckline"] == "high")
    inside_dark = np.median(pixels[neck], axis=0).sum() < 0.8 * np.median(pixels[torso], axis=0).sum()
    assert inside_dark == (g.labels["neckline"] != "high") or g.labels["color"] == "black"


@pytest.mark.parametrize("index", range(40))
def test_boxes_hold_their_parts(index):
    g, r, _ = rendered(index)

    def inside(mask, box):
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = box
        return xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1

    assert inside(r.parts == PART_TORSO, r.boxes["pattern"])
    assert inside(r.parts == PART_NECK, r.boxes["neckline"])
    assert inside(r.parts > 0, r.boxes["category"]) and r.boxes["color"] == r.boxes["category"]
    if g.labels["sleeve"] != "none":
        assert inside(r.parts == PART_SLEEVE, r.boxes["sleeve"])


def test_category_sets_length():
    heights = {}
    for i in range(200):
        g, r, _ = rendered(i, size=64)
        rows = np.flatnonzero((r.parts == PART_TORSO).any(axis=1))
        heights.setdefault(g.labels["category"], []).append((rows.max() - rows.min()) / g.scale)
    mean = {k: np.mean(v) for k, v in heights.items()}
    assert mean["top"] < mean["tunic"] < min(mean["dress"], mean["coat"])

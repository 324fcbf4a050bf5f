"""model.image_size: auto (fsnet/input_size.py): the input size from the catalog's photos, the rule as documented."""

import numpy as np
import pytest

from fsnet.config import load_config
from fsnet.errors import ConfigError
from fsnet.input_size import choose_image_size, choose_roi_size, resolve_input_size

CPU_SIZES = [96, 128, 160]


@pytest.mark.parametrize(
    "photo, size",
    [
        ((60, 80), 96),  # fashion-product-small's thumbnails: upscaled, as the measured preset
        ((96, 96), 96),
        ((100, 140), 128),
        ((171, 256), 160),  # a product photo beyond the CPU budget: the largest listed
        ((400, 300), 160),
    ],
)
def test_the_smallest_listed_size_at_least_the_median_shorter_side(photo, size):
    sides = np.full(9, min(photo))
    assert choose_image_size(sides, CPU_SIZES) == size


def test_the_median_decides_not_the_outliers():
    sides = np.array([60] * 7 + [1000] * 3)  # a few large photos in a catalog of thumbnails
    assert choose_image_size(sides, [160, 96, 128]) == 96  # the list's order does not matter
    with pytest.raises(ConfigError, match="no photo sizes"):
        choose_image_size(np.zeros(0), CPU_SIZES)


def test_roi_cells_follow_the_conv5_map():
    assert [choose_roi_size(s) for s in (64, 96, 128, 160, 224)] == [2, 4, 5, 6, 8]


def test_auto_is_decided_from_the_photos_and_said_and_a_fixed_size_reads_nothing():
    read = []

    def sides():
        read.append(1)
        return np.array([171, 171, 180])

    cfg, said = resolve_input_size(load_config(["cpu"]), sides)
    assert (cfg.model.image_size, cfg.model.roi_size) == (160, 6) and read == [1]
    assert "model.image_size=auto: 160 px" in said and "median shorter side 171 px" in said
    fixed, said = resolve_input_size(load_config(["cpu_mobilenet96"]), sides)
    assert (fixed.model.image_size, fixed.model.roi_size, said, read) == (96, 4, None, [1])

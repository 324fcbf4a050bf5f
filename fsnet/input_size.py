"""``model.image_size: auto``: the network's input size chosen from the catalog's photos, so that nobody guesses.

The rule (docs/training.md, "Which input size"): take the shorter side of every photo in the catalog (width and
height are recorded per image at pack), their median, and the smallest of ``train.auto_image_sizes`` at least that
large; photos larger than the largest listed size take the largest. The list is a budget: the CPU preset lists
96, 128 and 160 px (a 60x80 thumbnail becomes 96 px, which keeps MobileNetV2's stride-16 maps at 6x6; a 171x256
product photo becomes 160 px), the default list goes up to the ImageNet backbones' 224 px. Upscaling a small photo
is deliberate: the maps the attribute boxes are drawn on would otherwise be a few cells wide.

``model.roi_size: auto`` then takes 0.6 of the conv5 map's side (every backbone's conv5 is at stride 16), at least
2 cells: 4 at 96 px, 6 at 160 px, 8 at 224 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.errors import ConfigError

AUTO = "auto"
CONV5_STRIDE = 16  # every backbone's conv5 (and conv7) map: the input's side over 16
ROI_SHARE = 0.6  # roi_size: auto as a share of the conv5 map's side


def shorter_sides(catalog: Catalog) -> np.ndarray:
    """(N,) the shorter side in pixels of every photo in the catalog (its width and height columns, read alone)."""
    sides = [np.minimum(b["width"], b["height"]) for b in catalog.batches(None, ["width", "height"], 1 << 16)]
    return np.concatenate(sides) if sides else np.zeros(0, np.int64)


def choose_image_size(shorter_sides: np.ndarray, sizes: list[int]) -> int:
    """The smallest of ``sizes`` at least the median of ``shorter_sides`` (pixels), else the largest."""
    if not len(shorter_sides):
        raise ConfigError("model.image_size=auto: the catalog records no photo sizes to choose from")
    median = float(np.median(shorter_sides))
    ordered = sorted(sizes)
    return next((s for s in ordered if s >= median), ordered[-1])


def choose_roi_size(image_size: int) -> int:
    """ROI cells per side: ROI_SHARE of the conv5 map's side, at least 2."""
    return max(2, round(ROI_SHARE * math.ceil(image_size / CONV5_STRIDE)))


def resolve_input_size(cfg: Config, shorter_sides: Callable[[], np.ndarray]) -> tuple[Config, str | None]:
    """``cfg`` with model.image_size and model.roi_size numbers (``auto`` decided; ``shorter_sides()`` read only
    then), and the line that says what auto chose (None when nothing was auto)."""
    model = cfg.model
    if model.image_size != AUTO and model.roi_size != AUTO:
        return cfg, None
    said = []
    image_size = model.image_size
    if image_size == AUTO:
        sides = shorter_sides()
        image_size = choose_image_size(sides, cfg.train.auto_image_sizes)
        said.append(
            f"model.image_size=auto: {image_size} px (the catalog's photos: median shorter side "
            f"{float(np.median(sides)):.0f} px; sizes {', '.join(map(str, sorted(cfg.train.auto_image_sizes)))})"
        )
    roi_size = model.roi_size
    if roi_size == AUTO:
        roi_size = choose_roi_size(image_size)
        said.append(f"model.roi_size=auto: {roi_size} cells")
    resolved = model.model_copy(update={"image_size": image_size, "roi_size": roi_size})
    return cfg.model_copy(update={"model": resolved}), "; ".join(said)

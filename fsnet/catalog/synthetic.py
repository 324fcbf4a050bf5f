"""The synthetic catalog: drawn garment product photos on a plain background whose attributes live in
different regions, like the paper's datasets.

- category (shape and length): top (short), tunic (mid-length), dress (long, flared), coat (long, straight)
- sleeve: none / short / long (the arm regions beside the shoulders)
- neckline: round / v / square / high (the top centre)
- color (global): 8 colours well apart in RGB
- pattern (torso only): solid / stripes / dots / checks, in a contrasting shade covering under 40% of it

Nuisance variation keeps it from being trivial: position, scale, background tint, garment colour jitter,
pattern phase, pixel noise and JPEG compression. Every image is a pure function of (seed, index).

Each image also records the ground-truth region box of each attribute (``box_<attribute>``, "x0 y0 x1 y1"
in pixels, x1/y1 exclusive): the garment for category and color, the reach of long sleeves for sleeve, the
neck area for neckline, the torso for pattern. ``render_garment`` also returns a part map
(0 background, 1 torso, 2 sleeves, 3 neckline) so that tests can check labels against pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from fsnet.storage import Storage, join

ATTRIBUTES: dict[str, list[str]] = {
    "category": ["top", "tunic", "dress", "coat"],
    "sleeve": ["none", "short", "long"],
    "neckline": ["round", "v", "square", "high"],
    "color": ["black", "white", "red", "green", "blue", "yellow", "purple", "orange"],
    "pattern": ["solid", "stripes", "dots", "checks"],
}
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (238, 238, 236),
    "red": (200, 32, 38),
    "green": (40, 150, 62),
    "blue": (36, 72, 192),
    "yellow": (236, 206, 40),
    "purple": (122, 50, 152),
    "orange": (236, 122, 30),
}
PART_TORSO, PART_SLEEVE, PART_NECK = 1, 2, 3

# Garment geometry in garment units: x from the centre line, y down from the neck; scaled by `scale`.
SHOULDER = (0.20, 0.05)
ARMPIT = (0.18, 0.17)
SLEEVE_DIR = (math.sin(math.radians(35)), math.cos(math.radians(35)))  # outward and down
SLEEVE_LENGTH = {"none": 0.0, "short": 0.15, "long": 0.40}
TORSO: dict[str, list[tuple[float, float]]] = {  # right half, mirrored; starts at the neck
    "top": [(0.07, 0.0), SHOULDER, (0.19, 0.40)],
    "tunic": [(0.07, 0.0), SHOULDER, (0.21, 0.58)],
    "dress": [(0.07, 0.0), SHOULDER, (0.16, 0.35), (0.33, 0.82)],
    "coat": [(0.07, 0.0), SHOULDER, (0.22, 0.82)],
}
NECK_BOX = (-0.10, -0.06, 0.10, 0.17)


@dataclass(frozen=True)
class Garment:
    labels: dict[str, str]
    cx: float  # centre line, in image units (0..1)
    top: float  # neck line, in image units
    scale: float
    background: tuple[int, int, int]
    color: tuple[int, int, int]  # the palette colour after jitter
    phase: tuple[float, float]  # pattern offsets, in pattern periods
    noise: float  # pixel noise sigma


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # (S, S, 3) uint8, before JPEG
    parts: np.ndarray  # (S, S) uint8 part map
    boxes: dict[str, tuple[int, int, int, int]]  # attribute -> (x0, y0, x1, y1) pixels, exclusive ends


def sample_garment(seed: int, index: int) -> Garment:
    rng = np.random.default_rng([seed, index])
    labels = {name: values[int(rng.integers(len(values)))] for name, values in ATTRIBUTES.items()}
    base = rng.uniform(212, 250)
    background = tuple(int(np.clip(base + rng.uniform(-12, 12), 0, 255)) for _ in range(3))
    color = tuple(int(np.clip(c + rng.uniform(-14, 14), 0, 255)) for c in PALETTE[labels["color"]])
    return Garment(
        labels=labels,
        cx=0.5 + rng.uniform(-0.06, 0.06),
        top=0.12 + rng.uniform(-0.03, 0.03),
        scale=rng.uniform(0.78, 0.95),
        background=background,  # type: ignore[arg-type]
        color=color,  # type: ignore[arg-type]
        phase=(float(rng.uniform()), float(rng.uniform())),
        noise=float(rng.uniform(2, 7)),
    )


def render_garment(g: Garment, size: int, rng: np.random.Generator) -> Rendered:
    """Draw ``g`` at ``size`` px; ``rng`` draws the pixel noise."""
    s = size

    def px(x: float, y: float) -> tuple[float, float]:  # garment units -> pixels
        return ((g.cx + g.scale * x) * s, (g.top + g.scale * y) * s)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        (a, b), (c, d) = px(x0, y0), px(x1, y1)
        return (max(0, math.floor(a)), max(0, math.floor(b)), min(s, math.ceil(c)), min(s, math.ceil(d)))

    def mirrored(half: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [px(x, y) for x, y in half] + [px(-x, y) for x, y in reversed(half)]

    image = Image.new("RGB", (s, s), g.background)
    parts = Image.new("L", (s, s), 0)
    draw, pdraw = ImageDraw.Draw(image), ImageDraw.Draw(parts)
    outline = tuple(int(c * 0.55) for c in g.color)
    inner = tuple(int(c * 0.62) for c in g.color)  # the inside back of the garment, seen through the neckline

    # Sleeves (drawn first: the torso covers their roots).
    sleeve_polys = []
    for side in (1, -1):
        length = SLEEVE_LENGTH[g.labels["sleeve"]]
        if length == 0:
            continue
        dx, dy = SLEEVE_DIR[0] * length * side, SLEEVE_DIR[1] * length
        (sx, sy), (ax, ay) = SHOULDER, ARMPIT
        poly = [px(sx * side, sy), px(sx * side + dx, sy + dy), px(ax * side + dx, ay + dy), px(ax * side, ay)]
        sleeve_polys.append(poly)
        draw.polygon(poly, fill=g.color, outline=outline)
        pdraw.polygon(poly, fill=PART_SLEEVE)

    # Torso, with its pattern.
    torso = mirrored(TORSO[g.labels["category"]])
    torso_mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(torso_mask).polygon(torso, fill=255)
    layer = _pattern_layer(g, s)
    image.paste(Image.fromarray(layer), (0, 0), torso_mask)
    draw.polygon(torso, outline=outline)
    pdraw.polygon(torso, fill=PART_TORSO)

    # Neckline: a cut showing the inside of the garment, or a high collar band.
    neck = g.labels["neckline"]
    if neck == "round":  # the lower half of an ellipse hanging from the neck line
        shape = [px(-0.07, -0.10), px(0.07, 0.10)]
        draw.chord(shape, 0, 180, fill=inner, outline=outline)
        pdraw.chord(shape, 0, 180, fill=PART_NECK)
    elif neck == "v":
        shape = [px(-0.07, 0.0), px(0.07, 0.0), px(0.0, 0.15)]
        draw.polygon(shape, fill=inner, outline=outline)
        pdraw.polygon(shape, fill=PART_NECK)
    elif neck == "square":
        shape = [px(-0.07, 0.0), px(0.07, 0.08)]
        draw.rectangle(shape, fill=inner, outline=outline)
        pdraw.rectangle(shape, fill=PART_NECK)
    else:  # high
        shape = [px(-0.07, -0.05), px(0.07, 0.02)]
        draw.rectangle(shape, fill=g.color, outline=outline)
        pdraw.rectangle(shape, fill=PART_NECK)

    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, g.noise, (s, s, 3)).astype(np.float32)

    part_map = np.asarray(parts)
    long_dx, long_dy = SLEEVE_DIR[0] * SLEEVE_LENGTH["long"], SLEEVE_DIR[1] * SLEEVE_LENGTH["long"]
    reach = SHOULDER[0] + long_dx + 0.01
    garment_box = _mask_box(part_map > 0)
    return Rendered(
        image=np.clip(pixels, 0, 255).astype(np.uint8),
        parts=part_map,
        boxes={
            "category": garment_box,  # shape and length: the whole garment
            "sleeve": box(-reach, SHOULDER[1], reach, ARMPIT[1] + long_dy + 0.01),  # where long sleeves reach
            "neckline": box(*NECK_BOX),  # where every neckline shape lives
            "color": garment_box,  # global
            "pattern": _mask_box(part_map == PART_TORSO),  # the torso
        },
    )


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _pattern_layer(g: Garment, s: int) -> np.ndarray:
    """(S, S, 3) the garment colour with the torso pattern in a contrasting shade (under 40% coverage)."""
    layer = np.empty((s, s, 3), dtype=np.uint8)
    layer[:] = g.color
    kind = g.labels["pattern"]
    if kind == "solid":
        return layer
    luminance = 0.299 * g.color[0] + 0.587 * g.color[1] + 0.114 * g.color[2]
    c = np.asarray(g.color, dtype=np.float32)
    shade = c * 0.45 if luminance > 110 else c + (255 - c) * 0.6
    period = 0.09 * g.scale * s  # pixels
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    u = (xs - g.cx * s) / period + g.phase[0]
    v = (ys - g.top * s) / period + g.phase[1]
    if kind == "stripes":
        mask = (v % 1.0) < 0.35
    elif kind == "dots":
        mask = ((u % 1.0) - 0.5) ** 2 + ((v % 1.0) - 0.5) ** 2 < 0.25**2
    else:  # checks: lines both ways, 1 - 0.8^2 = 36% coverage
        mask = ((u % 1.0) < 0.2) | ((v % 1.0) < 0.2)
    layer[mask] = shade.astype(np.uint8)
    return layer


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def image_name(index: int) -> str:
    return f"{index:06d}.jpg"


def format_box(b: tuple[int, int, int, int]) -> str:
    return " ".join(str(v) for v in b)


def parse_box(text: str) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in text.split())
    return (x0, y0, x1, y1)


LABEL_COLUMNS = ["image", *ATTRIBUTES, *(f"box_{a}" for a in ATTRIBUTES)]


class SyntheticWriter:
    """Ray Data callable: renders the images of a batch of indices, writes them under ``<out>/images/`` and
    returns their rows of labels.csv."""

    def __init__(self, storage: Storage, out_url: str, size: int, seed: int, quality: int):
        self.storage = storage
        self.out_url = out_url
        self.size = size
        self.seed = seed
        self.quality = quality

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows: dict[str, list[str]] = {c: [] for c in LABEL_COLUMNS}
        files: dict[str, bytes] = {}
        for index in batch["id"].tolist():
            garment = sample_garment(self.seed, index)
            rendered = render_garment(garment, self.size, np.random.default_rng([self.seed, index, 1]))
            name = image_name(index)
            files[join(self.out_url, "images", name)] = encode_jpeg(rendered.image, self.quality)
            rows["image"].append(name)
            for attr in ATTRIBUTES:
                rows[attr].append(garment.labels[attr])
                rows[f"box_{attr}"].append(format_box(rendered.boxes[attr]))
        fs, _ = self.storage.fs(self.out_url)
        paths = {self.storage.fs(url)[1]: data for url, data in files.items()}
        fs.mkdirs(self.storage.fs(join(self.out_url, "images"))[1], exist_ok=True)
        fs.pipe(paths)  # one call: concurrent PUTs on object stores
        return pa.table({c: pa.array(v, pa.string()) for c, v in rows.items()})

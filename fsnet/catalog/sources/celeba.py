"""CelebA: ``list_attr_celeba.txt`` (40 binary attributes, +1/-1) grouped into the paper's 8 attributes with
21 values, plus the optional ``list_eval_partition.txt``.

Grouping rule (see README):
- one-of groups (hair_color, beard, hair_type): exactly one member +1 gives that value; no member +1, or
  two or more (a conflict, e.g. Goatee and Mustache both +1), give unknown (-1): such images are trained on
  but never used as queries or gallery, and the counts of both cases are recorded in catalog.json.
- binary groups (smiling, eyeglasses, gender, hat, age): +1 gives the positive value, -1 the negative one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fsnet.catalog.schema import UNKNOWN, Attribute, AttributeSchema
from fsnet.catalog.sources.base import SourceTable, build_source_table
from fsnet.config import SourceConfig
from fsnet.errors import SourceError
from fsnet.storage import Storage, is_absolute, join

# attribute -> ordered (value, CelebA binary attribute) pairs
ONE_OF_GROUPS: dict[str, list[tuple[str, str]]] = {
    "hair_color": [("black", "Black_Hair"), ("blond", "Blond_Hair"), ("brown", "Brown_Hair"), ("gray", "Gray_Hair")],
    "beard": [("goatee", "Goatee"), ("mustache", "Mustache"), ("sideburns", "Sideburns"), ("none", "No_Beard")],
    "hair_type": [("bald", "Bald"), ("straight", "Straight_Hair"), ("wavy", "Wavy_Hair")],
}
# attribute -> (CelebA binary attribute, value when -1, value when +1)
BINARY_GROUPS: dict[str, tuple[str, str, str]] = {
    "smiling": ("Smiling", "no", "yes"),
    "eyeglasses": ("Eyeglasses", "no", "yes"),
    "gender": ("Male", "female", "male"),
    "hat": ("Wearing_Hat", "no", "yes"),
    "age": ("Young", "old", "young"),
}
ATTRIBUTE_ORDER = ["hair_color", "beard", "hair_type", "smiling", "eyeglasses", "gender", "hat", "age"]


def celeba_schema() -> AttributeSchema:
    attrs = []
    for name in ATTRIBUTE_ORDER:
        if name in ONE_OF_GROUPS:
            values = [v for v, _ in ONE_OF_GROUPS[name]]
        else:
            values = list(BINARY_GROUPS[name][1:])
        attrs.append(Attribute(name=name, values=values))
    return AttributeSchema(attributes=attrs)


def group_celeba(binary: np.ndarray, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """(N, 40) array of +1/-1 -> labels per grouped attribute and, per one-of group, counts of images with
    no member set ('none') and with several set ('conflict')."""
    col = {n: i for i, n in enumerate(names)}
    positive = binary == 1
    labels: dict[str, np.ndarray] = {}
    notes: dict[str, dict[str, int]] = {}
    for attr, members in ONE_OF_GROUPS.items():
        hits = positive[:, [col[m] for _, m in members]]  # (N, values)
        count = hits.sum(axis=1)
        codes = np.where(count == 1, hits.argmax(axis=1), UNKNOWN).astype(np.int16)
        labels[attr] = codes
        notes[attr] = {"none": int((count == 0).sum()), "conflict": int((count > 1).sum())}
    for attr, (member, _, _) in BINARY_GROUPS.items():
        labels[attr] = positive[:, col[member]].astype(np.int16)
    return labels, notes


def read_celeba_source(cfg: SourceConfig, storage: Storage) -> SourceTable:
    assert cfg.path is not None
    attr_url = join(cfg.path, cfg.celeba.attr_file)
    if not storage.exists(attr_url):
        raise SourceError(f"{attr_url}: CelebA attribute file not found (source.path + source.celeba.attr_file)")
    images, binary, names = _parse_attr_file(storage.read_text(attr_url), attr_url)
    required = [m for ms in ONE_OF_GROUPS.values() for _, m in ms] + [m for m, _, _ in BINARY_GROUPS.values()]
    missing = [m for m in required if m not in names]
    if missing:
        raise SourceError(f"{attr_url}: header lacks the CelebA attribute(s) {', '.join(missing)}")
    labels, notes = group_celeba(binary, names)

    extras: dict[str, pa.Array] = {}
    description = {
        "kind": "celeba",
        "path": cfg.path,
        "attr_file": cfg.celeba.attr_file,
        "rows": len(images),
        "groups": notes,
    }
    if cfg.celeba.partition_file is not None:
        part_url = join(cfg.path, cfg.celeba.partition_file)
        if storage.exists(part_url):
            extras["partition"] = pa.array(_parse_partition(storage.read_text(part_url), part_url, images), pa.int8())
            description["partition_file"] = cfg.celeba.partition_file
        else:
            description["partition_file"] = f"not found: {cfg.celeba.partition_file}"

    root = cfg.celeba.images if is_absolute(cfg.celeba.images) else join(cfg.path, cfg.celeba.images)
    return build_source_table(
        origin=attr_url,
        ids=[name.rsplit(".", 1)[0] for name in images],
        images=images,
        image_urls=[join(root, name) for name in images],
        labels=labels,
        schema=celeba_schema(),
        extras=extras,
        description=description,
    )


def _parse_attr_file(text: str, origin: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Line 1: the image count; line 2: the 40 attribute names; then '<file> +1/-1 x 40' per image."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise SourceError(f"{origin}: expected a count line, a header line and image rows")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise SourceError(f"{origin}: line 1 should be the number of images, got {lines[0][:40]!r}") from None
    names = lines[1].split()
    images: list[str] = []
    rows: list[list[int]] = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise SourceError(f"{origin}: line {number} has {len(parts) - 1} values, the header names {len(names)}")
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise SourceError(f"{origin}: line {number}: values must be 1 or -1") from None
        if any(v not in (1, -1) for v in values):
            raise SourceError(f"{origin}: line {number}: values must be 1 or -1")
        images.append(parts[0])
        rows.append(values)
    if declared != len(images):
        raise SourceError(f"{origin}: line 1 declares {declared} images but {len(images)} rows follow")
    return images, np.asarray(rows, dtype=np.int8).reshape(len(images), len(names)), names


def _parse_partition(text: str, origin: str, images: list[str]) -> list[int | None]:
    partition: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
            raise SourceError(f"{origin}: line {number}: expected '<image> 0|1|2'")
        partition[parts[0]] = int(parts[1])
    return [partition.get(name) for name in images]

"""What every source produces: a validated table of images to pack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fsnet.catalog.schema import AttributeSchema
from fsnet.errors import SourceError

# Shard columns that no attribute or extra column may shadow.
RESERVED_COLUMNS = ("id", "image", "width", "height")


@dataclass
class FixedSplits:
    """Splits the source itself publishes (ADDE's imgs_train / imgs_test), used instead of the seeded rule."""

    split: np.ndarray  # (N,) 'train' / 'query' / 'gallery' per row of the source table
    source: str  # for catalog.json, e.g. "adde: imgs_train.txt -> train, imgs_test.txt -> gallery"


@dataclass
class SourceProtocol:
    """The source's own evaluation query list, one row per manipulation in the file's order."""

    query: np.ndarray  # (M,) ids, each in the gallery split
    change: np.ndarray  # (M, A) int16 the new value per attribute, -1 where unchanged
    target: np.ndarray  # (M, A) int16 the target attribute vector, -1 unknown
    source: str  # for catalog.json, e.g. "adde: ref_test.txt, indfull_test.txt, gt_test.txt"


@dataclass
class SourceTable:
    """``table`` columns: ``id`` (unique), ``image`` (the name as the source gives it), ``image_url`` (where the
    bytes are), one int16 column per attribute (value index, -1 unknown), then the extra columns. ``splits`` and
    ``protocol`` only for sources that publish their own (ADDE's split files)."""

    schema: AttributeSchema
    table: pa.Table
    extra_columns: list[str]
    description: dict[str, Any] = field(default_factory=dict)
    splits: FixedSplits | None = None
    protocol: SourceProtocol | None = None

    def __len__(self) -> int:
        return self.table.num_rows


def build_source_table(
    *,
    origin: str,
    ids: list[str],
    images: list[str],
    image_urls: list[str],
    labels: dict[str, np.ndarray],
    schema: AttributeSchema,
    extras: dict[str, pa.Array] | None = None,
    description: dict[str, Any] | None = None,
) -> SourceTable:
    """Check ids (present, unique) and column names, then assemble the table. ``origin`` names the file the
    rows came from in every error."""
    extras = extras or {}
    if not ids:
        raise SourceError(f"{origin}: no rows")
    clash = [c for c in [*labels, *extras] if c in RESERVED_COLUMNS or c == "image_url"]
    if clash:
        raise SourceError(
            f"{origin}: column(s) {', '.join(clash)} would shadow the shard columns {', '.join(RESERVED_COLUMNS)}; "
            "rename them or list them in source.ignore"
        )
    empty = [i + 1 for i, v in enumerate(ids) if not v]
    if empty:
        raise SourceError(f"{origin}: {len(empty)} row(s) with an empty id or image name (data rows {empty[:5]})")
    id_array = pa.array(ids, pa.string())
    counts = pc.value_counts(id_array)
    dup_mask = pc.greater(counts.field("counts"), 1)
    duplicates = counts.field("values").filter(dup_mask).to_pylist()
    if duplicates:
        shown = ", ".join(repr(d) for d in sorted(duplicates)[:5])
        raise SourceError(
            f"{origin}: {len(duplicates)} duplicate id(s): {shown}{' ...' if len(duplicates) > 5 else ''}; ids must "
            "be unique, nothing was written"
        )
    columns: dict[str, pa.Array] = {
        "id": id_array,
        "image": pa.array(images, pa.string()),
        "image_url": pa.array(image_urls, pa.string()),
    }
    for name in schema.names:
        columns[name] = pa.array(labels[name].astype(np.int16), pa.int16())
    columns.update(extras)
    return SourceTable(
        schema=schema, table=pa.table(columns), extra_columns=list(extras), description=description or {}
    )

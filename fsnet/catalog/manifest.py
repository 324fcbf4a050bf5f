"""``catalog.json``: what a packed catalog holds. It is written last by the pack job, so every file it names
exists when a reader sees it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from fsnet.catalog.schema import Attribute, AttributeSchema

CATALOG_FILE = "catalog.json"
REJECTED_FILE = "rejected.csv"
FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShardInfo(_Model):
    path: str  # relative to the catalog URL
    rows: int
    fingerprint: str  # "sha256:<hex>" of the file's bytes
    bytes: int


class SplitRule(_Model):
    n_query: int | float
    n_gallery: int | float
    seed: int


class SplitInfo(_Model):
    path: str  # Parquet (id, split), relative to the catalog URL
    fingerprint: str
    rule: SplitRule | None  # the seeded rule (split.*); None when the source fixed the splits (see ``source``)
    counts: dict[str, int]
    source: str | None = None  # fixed splits: which source file gave which split (absent in catalogs before them)


class ProtocolInfo(_Model):
    """The source's own evaluation query list (ADDE's ref/indfull/gt files), stored as it was published."""

    path: str  # Parquet (query id, change, target), relative to the catalog URL
    fingerprint: str
    rows: int  # manipulations, in the file's order
    queries: int  # distinct query ids
    rejected_queries: int  # queries whose image the pack rejected: evaluate drops their manipulations, counted
    source: str  # which files, e.g. "adde: ref_test.txt, indfull_test.txt, gt_test.txt"


class RejectedInfo(_Model):
    count: int
    by_reason: dict[str, int]
    path: str


class CatalogManifest(_Model):
    format: int
    fsnet_version: str
    created: str
    rows: int
    attributes: list[Attribute]
    value_counts: dict[str, list[int]]  # per attribute, per value (packed rows)
    unknown_counts: dict[str, int]
    extra_columns: list[str]
    shards: list[ShardInfo]
    splits: SplitInfo
    rejected: RejectedInfo
    source: dict[str, Any]
    protocol: ProtocolInfo | None = None  # only sources with their own query list have one; absent in older catalogs

    def attribute_schema(self) -> AttributeSchema:
        return AttributeSchema(attributes=self.attributes)

"""MANIFEST.json of an index version, and the CURRENT pointer.

<index>/CURRENT                  "v<N>": the live version; written last, after everything it names exists
<index>/v<N>/MANIFEST.json       what v<N> holds (below)
<index>/v<N>/embeddings/catalog_shard=<fp12>/*.parquet   one folder per catalog shard covered
<index>/v<N>/index.faiss         global representations of the indexed rows (positions = rows of ids.parquet)
<index>/v<N>/ids.parquet         position -> id
<index>/v<N>/config.yaml         the resolved config of the run that built it

Searching and evaluating load the whole model (its memory block included) from ``model.url``, whose sha256 the
manifest records. Older versions also hold memory.pt (listed as ``files["memory"]``: a copy of the memory block that
nothing read); they open as they are, and fsnet verify still checks that file where a manifest lists it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from fsnet.catalog.manifest import CatalogManifest
from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.fingerprint import short_fingerprint
from fsnet.storage import Storage, join

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "MANIFEST.json"
FORMAT_VERSION = 1
VERSION_DIR = re.compile(r"^v(\d+)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CoveredShard(_Model):
    fingerprint: str  # the catalog shard's sha256 fingerprint
    catalog_path: str  # its path in the catalog when it was indexed
    embeddings: str  # folder of its embedding rows, relative to the version folder
    rows: int  # rows of the indexed split in this shard
    indexed: int
    rejected: int
    reused_from: int | None  # the version its embeddings were copied from; None: extracted for this version


class RejectedImage(_Model):
    id: str
    catalog_shard: str
    reason: str


class ModelRef(_Model):
    url: str
    sha256: str


class IndexManifest(_Model):
    format: int
    fsnet_version: str
    created: str
    version: int
    catalog: str
    split: str
    splits_fingerprint: str  # the catalog's split file when indexed: a new split can change the gallery
    model: ModelRef
    attributes: list[Attribute]
    embed_dim: int
    global_dim: int
    image_size: int
    index_kind: str
    shards: list[CoveredShard]
    indexed: int
    rejected: list[RejectedImage]
    timings: dict[str, float]
    files: dict[str, str]

    def attribute_schema(self) -> AttributeSchema:
        return AttributeSchema(attributes=self.attributes)

    @property
    def covered(self) -> dict[str, CoveredShard]:
        return {s.fingerprint: s for s in self.shards}

    def catalog_differences(self, catalog: CatalogManifest) -> list[str]:
        """How ``catalog`` differs from the catalog this version was built from (its split file and its shards,
        by fingerprint; the URL may differ: a copied catalog is the same catalog); empty when it is the same."""
        out = []
        if catalog.splits.fingerprint != self.splits_fingerprint:
            out.append(
                f"split differs: catalog {_short('splits', catalog.splits.fingerprint)} vs index built on "
                f"{_short('splits', self.splits_fingerprint)}"
            )
        packed = {s.fingerprint for s in catalog.shards}
        new = [s for s in catalog.shards if s.fingerprint not in self.covered]
        gone = [s for s in self.shards if s.fingerprint not in packed]
        if new:
            out.append(
                f"{len(new)} of the catalog's {len(catalog.shards)} shard(s) not in the index ({new[0].path}"
                f"{', ...' if len(new) > 1 else ''})"
            )
        if gone:
            out.append(
                f"{len(gone)} indexed shard(s) no longer in the catalog ({gone[0].catalog_path}"
                f"{', ...' if len(gone) > 1 else ''})"
            )
        return out


def _short(kind: str, fingerprint: str) -> str:
    """ "sha256:<hex>" -> "<kind>-<first 12 hex digits>", as messages name a file's version."""
    return f"{kind}-{short_fingerprint(fingerprint)}"


def version_name(version: int) -> str:
    return f"v{version}"


def read_current(storage: Storage, index_url: str) -> int | None:
    url = join(index_url, CURRENT_FILE)
    if not storage.exists(url):
        return None
    match = VERSION_DIR.match(storage.read_text(url).strip())
    return int(match.group(1)) if match else None


def write_current(storage: Storage, index_url: str, version: int) -> None:
    storage.write_text(join(index_url, CURRENT_FILE), version_name(version) + "\n")


def versions(storage: Storage, index_url: str) -> list[int]:
    """Every v<N> folder under the index, complete or not."""
    return sorted(int(m.group(1)) for name in storage.listdir(index_url) if (m := VERSION_DIR.match(name)))


GATE_FILE = "GATE.json"  # in a version the re-index gate judged (jobs/gate.py): its verdict


def is_refused(storage: Storage, index_url: str, version: int) -> bool:
    """The re-index gate refused this version: it stays unpublished beside the others."""
    url = join(index_url, version_name(version), GATE_FILE)
    return storage.exists(url) and not json.loads(storage.read_text(url)).get("published", False)


def read_manifest(storage: Storage, index_url: str, version: int) -> IndexManifest:
    return IndexManifest.model_validate_json(storage.read_bytes(join(index_url, version_name(version), MANIFEST_FILE)))


def manifest_dict(manifest: IndexManifest) -> dict[str, Any]:
    return manifest.model_dump(mode="json")

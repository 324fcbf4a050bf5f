"""Open the live version of an index (the one CURRENT names) for searching."""

from __future__ import annotations

import hashlib
import io
from functools import cached_property
from typing import Sequence

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from fsnet.catalog.manifest import CatalogManifest
from fsnet.errors import CatalogError, ModelError
from fsnet.index.faiss_index import index_from_bytes, search
from fsnet.index.manifest import IndexManifest, read_current, read_manifest, version_name
from fsnet.model import RetrievalModel
from fsnet.model.checkpoint import model_from_bytes
from fsnet.storage import Storage, join


class CatalogMismatch(CatalogError):
    """The catalog given is not the one the index was built from (another split, other shards)."""


class ModelMismatch(ModelError):
    """The model file the index names is not the model the index was built with (its sha256 differs)."""


class IndexReader:
    def __init__(self, url: str, storage: Storage, manifest: IndexManifest):
        self.url, self.storage, self.manifest = url, storage, manifest
        self.version_url = join(url, version_name(manifest.version))

    @classmethod
    def open(cls, url: str, storage: Storage, version: int | None = None) -> "IndexReader":
        """The version CURRENT names, or ``version`` (one not published yet: the re-index gate evaluates it)."""
        version = read_current(storage, url) if version is None else version
        if version is None:
            raise CatalogError(f"{url}: no CURRENT index (build one with fsnet index)")
        return cls(url, storage, read_manifest(storage, url, version))

    def check_catalog(
        self, catalog_url: str, catalog: CatalogManifest, allow: bool = False, flag: str = "--allow-catalog-mismatch"
    ) -> str | None:
        """None when ``catalog`` is the catalog this version was built from; else one line saying how it differs,
        raised as CatalogMismatch unless ``allow`` (the caller then prints it and goes on)."""
        differences = self.manifest.catalog_differences(catalog)
        if not differences:
            return None
        built = f"{self.url} v{self.manifest.version}"
        if catalog_url == self.manifest.catalog:  # re-packed in place since
            line = f"{catalog_url} has changed since {built} was built from it: {'; '.join(differences)}"
        else:
            line = (
                f"{catalog_url} is not the catalog {built} was built from ({self.manifest.catalog}): "
                f"{'; '.join(differences)}"
            )
        if not allow:
            raise CatalogMismatch(f"{line}; re-index with fsnet reindex or pass {flag}")
        return line

    def model(self) -> RetrievalModel:
        """The model this version was built with, on the CPU in eval mode: the file its manifest names, whose bytes
        must have the sha256 recorded there. A file replaced since (retrained into the same --out, copied over) would
        rank with other representations than the index holds: one ModelMismatch naming both hashes, whatever the
        shapes."""
        url, recorded = self.manifest.model.url, self.manifest.model.sha256
        data = self.storage.read_bytes(url)
        found = "sha256:" + hashlib.sha256(data).hexdigest()
        if found != recorded:
            raise ModelMismatch(
                f"{url} is not the model {self.url} v{self.manifest.version} was built with: its sha256 is "
                f"{found[:19]}..., the index's manifest records {recorded[:19]}...; re-index with this model "
                "(fsnet index) or put the index's model back"
            )
        return model_from_bytes(data, origin=url).eval()

    @cached_property
    def faiss_index(self) -> faiss.Index:
        return index_from_bytes(self.storage.read_bytes(join(self.version_url, self.manifest.files["index"])))

    @cached_property
    def ids(self) -> np.ndarray:
        """Index position -> id."""
        table = pq.read_table(io.BytesIO(self.storage.read_bytes(join(self.version_url, self.manifest.files["ids"]))))
        return table["id"].to_numpy(zero_copy_only=False)

    def embeddings(self, ids: Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Embedding rows (all, or of ``ids``) of this version, failed rows excluded."""
        fs, path = self.storage.arrow_fs(join(self.version_url, self.manifest.files["embeddings"]))
        dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
        condition = pads.field("error").is_null()
        if ids is not None:
            condition = condition & pads.field("id").isin(pa.array(list(ids), pa.string()))
        return dataset.to_table(columns=list(columns) if columns else None, filter=condition)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (Q, k), ids (Q, k) as objects; None where the index has fewer than k rows)."""
        distances, positions = search(self.faiss_index, vectors, k)
        ids = np.where(positions >= 0, self.ids[np.clip(positions, 0, None)], None)
        return distances, ids

"""Read a packed catalog: its schema, a split as a Ray Data dataset (projected columns, the id filter pushed
down into the Parquet scan) or as plain batches of numpy arrays, and its stored query list.

A shard that cannot be read (its bytes changed or it is gone) ends a job with one line naming it: ``reading()``
wraps where the jobs consume rows, ``rows()``/``batches()``/``dataset()`` wrap their own reads; the check of the files
against their fingerprints is fsnet/catalog/integrity.py."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import ValidationError

from fsnet.catalog.integrity import explained_reads, verify_files
from fsnet.catalog.manifest import CATALOG_FILE, CatalogManifest, ShardInfo
from fsnet.catalog.schema import AttributeSchema
from fsnet.catalog.splits import SPLITS
from fsnet.errors import CatalogError
from fsnet.storage import Storage, join

if TYPE_CHECKING:
    import ray.data


class Catalog:
    def __init__(self, url: str, storage: Storage, manifest: CatalogManifest):
        self.url = url
        self.storage = storage
        self.manifest = manifest

    @classmethod
    def open(cls, url: str, storage: Storage) -> "Catalog":
        manifest_url = join(url, CATALOG_FILE)
        if not storage.exists(manifest_url):
            raise CatalogError(
                f"{manifest_url} not found: not a packed catalog (or a pack to it is running); make one with `fsnet "
                "pack`"
            )
        try:
            manifest = CatalogManifest.model_validate_json(storage.read_bytes(manifest_url))
        except ValidationError as err:
            raise CatalogError(
                f"{manifest_url}: not a catalog this fsnet reads: {err.errors()[0]['msg']} at {err.errors()[0]['loc']}"
            ) from None
        return cls(url, storage, manifest)

    @property
    def schema(self) -> AttributeSchema:
        return self.manifest.attribute_schema()

    @property
    def columns(self) -> list[str]:
        return ["id", "image", *self.schema.names, "width", "height", *self.manifest.extra_columns]

    @property
    def shard_urls(self) -> list[str]:
        return [join(self.url, s.path) for s in self.manifest.shards]

    @cached_property
    def _splits(self) -> pa.Table:
        info = self.manifest.splits
        return pq.read_table(io.BytesIO(self.storage.read_bytes(join(self.url, info.path))))

    def split_ids(self, split: str | Sequence[str]) -> np.ndarray:
        """Ids of one split ('train', 'query', 'gallery') or of several, in catalog order."""
        wanted = [split] if isinstance(split, str) else list(split)
        unknown = [s for s in wanted if s not in SPLITS]
        if unknown:
            raise CatalogError(f"unknown split(s) {', '.join(unknown)} (splits: {', '.join(SPLITS)})")
        table = self._splits
        mask = pc.is_in(table["split"], pa.array(wanted, pa.string()))
        return table["id"].filter(mask).to_numpy(zero_copy_only=False)

    @cached_property
    def _protocol(self) -> pa.Table | None:
        info = self.manifest.protocol
        if info is None:
            return None
        return pq.read_table(io.BytesIO(self.storage.read_bytes(join(self.url, info.path))))

    def protocol(self) -> dict[str, np.ndarray] | None:
        """The source's own query list (ADDE's ref/indfull/gt files), in the file's order, or None when the catalog
        has none: ``query`` (M,) ids (gallery images), ``change`` (M, A) the new value per attribute (-1 where
        unchanged), ``target`` (M, A) the target attribute vector (-1 unknown)."""
        table = self._protocol
        if table is None:
            return None
        a = len(self.schema.names)

        def matrix(name: str) -> np.ndarray:  # fixed_size_list<int16>[A] -> (M, A)
            column = table[name].combine_chunks()
            return column.values.to_numpy(zero_copy_only=False).astype(np.int16).reshape(len(column), a)

        return {
            "query": table["query"].to_numpy(zero_copy_only=False).astype(str),
            "change": matrix("change"),
            "target": matrix("target"),
        }

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return self.columns
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise CatalogError(f"{self.url}: no column(s) {', '.join(unknown)} (columns: {', '.join(self.columns)})")
        return list(columns)

    def dataset(
        self,
        split: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        read_cpus: float | None = None,
        shards: Sequence[str] | None = None,
        with_shard: bool = False,
    ) -> "ray.data.Dataset":
        """The rows of ``split`` (one or several; all rows when None) as a lazy Ray Data dataset.

        ``read_cpus``: CPUs per read task (Ray's default: 1); ``shards``: only the shards with these fingerprints;
        ``with_shard``: add ``catalog_shard``, the first 12 hex digits of the fingerprint of the row's shard. Needs a
        running Ray: the jobs start it; the library never does."""
        import ray
        import ray.data
        from ray.data.expressions import col

        if not ray.is_initialized():
            raise CatalogError(
                "Catalog.dataset needs a running Ray cluster (jobs call ray.init; fsnet never starts Ray)"
            )
        fs, _ = self.storage.arrow_fs(self.url)
        wanted = self._check_columns(columns)
        paths = self._shard_paths(shards)
        read_args = {"num_cpus": read_cpus} if read_cpus is not None else {}
        with self.reading():  # Ray may read footers here; the rows are read where the caller consumes them
            ds = ray.data.read_parquet(paths, filesystem=fs, include_paths=with_shard, **read_args)
            if split is not None:
                ds = ds.filter(expr=col("id").is_in(self.split_ids(split).tolist()))
        if with_shard:
            ds = ds.map_batches(_tag_shard, batch_format="pyarrow", **read_args)  # fused into the read
            wanted = [*wanted, "catalog_shard"]
        return ds.select_columns(wanted)  # Ray's optimizer pushes the projection and the filter into the scan

    def _shard_paths(self, shards: Sequence[str] | None = None) -> list[str]:
        """The shard files' paths on the catalog's filesystem: all, or those with these fingerprints."""
        infos = self.manifest.shards if shards is None else [s for s in self.manifest.shards if s.fingerprint in shards]
        return [self.storage.arrow_fs(join(self.url, s.path))[1] for s in infos]

    def _arrow_dataset(self, shards: Sequence[str] | None = None) -> pads.Dataset:
        fs, _ = self.storage.arrow_fs(self.url)
        return pads.dataset(self._shard_paths(shards), filesystem=fs, format="parquet")

    def batches(
        self,
        split: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = 256,
        shards: Sequence[str] | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """The rows of ``split`` as dicts of numpy arrays of ``batch_size`` rows (the last may be shorter), in
        catalog order, without Ray; ``shards``: only the shards with these fingerprints. Binary and string columns
        come as object arrays."""
        wanted = self._check_columns(columns)
        read = wanted if split is None or "id" in wanted else [*wanted, "id"]
        with self.reading():
            dataset = self._arrow_dataset(shards)
            filter_ = None if split is None else pads.field("id").isin(pa.array(self.split_ids(split), pa.string()))
            record_batches = dataset.to_batches(columns=read, filter=filter_, batch_size=batch_size)
        pending: list[pa.RecordBatch] = []
        held = 0
        for record_batch in self._read(record_batches):
            pending.append(record_batch)
            held += record_batch.num_rows
            while held >= batch_size:
                table = pa.Table.from_batches(pending)
                yield _to_numpy(table.slice(0, batch_size), wanted)
                rest = table.slice(batch_size)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield _to_numpy(pa.Table.from_batches(pending), wanted)

    def rows(self, ids: Sequence[str], columns: Sequence[str]) -> dict[str, np.ndarray]:
        """The rows with these ids (in catalog order; missing ids are absent), without Ray."""
        wanted = self._check_columns(columns)
        with self.reading():
            table = self._arrow_dataset().to_table(
                columns=wanted, filter=pads.field("id").isin(pa.array(list(ids), pa.string()))
            )
        return _to_numpy(table, wanted)

    def shard_ids(self, info: ShardInfo) -> list[str]:
        """The ids of one shard, in its order (only the id column is read)."""
        fs, path = self.storage.arrow_fs(join(self.url, info.path))
        return pq.read_table(path, filesystem=fs, columns=["id"])["id"].to_pylist()

    def verify(self) -> list[str]:
        """One line per file of the catalog (shards, split file, stored query list) that is missing or whose bytes
        no longer match its fingerprint in catalog.json; empty when all is well. Reads every byte."""
        return verify_files(self.url, self.storage, self.manifest)

    def reading(self) -> AbstractContextManager[None]:
        """Where the shards are read (here, in Ray tasks or in Ray Train workers): a failed read that a changed or
        missing file explains becomes one CatalogError naming that file (fsnet/catalog/integrity.py)."""
        return explained_reads(self.url, self.storage, self.manifest)

    def _read(self, items: Iterable) -> Iterator:
        """``items`` as they are read, inside ``reading()`` (for the lazy reads of a generator)."""
        iterator = iter(items)
        while True:
            with self.reading():
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item


def _tag_shard(batch: pa.Table) -> pa.Table:
    """``path`` (a shard file, part-NNNNN-<fp12>.parquet) -> ``catalog_shard`` (<fp12>)."""
    names = pc.struct_field(pc.extract_regex(batch["path"], r"part-\d+-(?P<fp>[0-9a-f]{12})\.parquet$"), "fp")
    return batch.drop_columns(["path"]).append_column("catalog_shard", names)


def _to_numpy(table: pa.Table, columns: list[str]) -> dict[str, np.ndarray]:
    return {c: table[c].to_numpy(zero_copy_only=False) for c in columns}

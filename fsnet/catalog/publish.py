"""Publish a packed catalog: the split file (and the source's own query list, when it has one), rejected.csv,
then catalog.json last, then the removal of files that no catalog.json names any more. A reader never sees a
catalog.json naming a file that is missing."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import fsnet
from fsnet.catalog.manifest import (
    CATALOG_FILE,
    FORMAT_VERSION,
    REJECTED_FILE,
    CatalogManifest,
    ProtocolInfo,
    RejectedInfo,
    ShardInfo,
    SplitInfo,
    SplitRule,
)
from fsnet.catalog.shard_writer import SHARD_DIR
from fsnet.catalog.sources.base import SourceProtocol, SourceTable
from fsnet.catalog.splits import SPLITS, assign_splits
from fsnet.config import SplitConfig
from fsnet.errors import CatalogError
from fsnet.fingerprint import short_fingerprint
from fsnet.storage import Storage, join


def publish_catalog(
    storage: Storage,
    out_url: str,
    source: SourceTable,
    shards: list[ShardInfo],
    rejected: list[dict],
    split_cfg: SplitConfig,
) -> CatalogManifest:
    rejected_ids = pa.array([r["id"] for r in rejected], pa.string())
    kept = pc.invert(pc.is_in(source.table["id"], rejected_ids))
    packed = source.table.filter(kept)
    if packed.num_rows != sum(s.rows for s in shards):
        raise CatalogError(
            f"{out_url}: shards hold {sum(s.rows for s in shards)} rows but {packed.num_rows} were packed; nothing "
            "published"
        )
    names = source.schema.names
    labels = (
        np.stack([packed[a].to_numpy() for a in names], axis=1)
        if packed.num_rows
        else np.zeros((0, len(names)), np.int16)
    )
    ids = packed["id"].to_pylist()
    if source.splits is not None:  # the source's own splits, less the rejected rows
        split = source.splits.split[kept.to_numpy(zero_copy_only=False)]
        rule = None
    else:
        split = assign_splits(ids, labels, split_cfg)
        rule = SplitRule(n_query=split_cfg.n_query, n_gallery=split_cfg.n_gallery, seed=split_cfg.seed)

    split_table = pa.table({"id": pa.array(ids, pa.string()), "split": pa.array(split.tolist(), pa.string())})
    split_path, split_fp = _write_artifact(storage, out_url, "splits", split_table)
    protocol = None if source.protocol is None else _write_protocol(storage, out_url, source, set(ids))

    frame = pd.DataFrame(rejected, columns=["id", "image", "reason", "detail"])
    storage.write_text(join(out_url, REJECTED_FILE), frame.to_csv(index=False))

    manifest = CatalogManifest(
        format=FORMAT_VERSION,
        fsnet_version=fsnet.__version__,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        rows=packed.num_rows,
        attributes=source.schema.attributes,
        value_counts={
            a.name: np.bincount(labels[:, i][labels[:, i] >= 0], minlength=len(a.values)).tolist()
            for i, a in enumerate(source.schema.attributes)
        },
        unknown_counts={a: int((labels[:, i] < 0).sum()) for i, a in enumerate(names)},
        extra_columns=source.extra_columns,
        shards=shards,
        splits=SplitInfo(
            path=split_path,
            fingerprint=split_fp,
            rule=rule,
            counts={s: int((split == s).sum()) for s in SPLITS},
            source=None if source.splits is None else source.splits.source,
        ),
        rejected=RejectedInfo(
            count=len(rejected), by_reason=dict(Counter(r["reason"] for r in rejected)), path=REJECTED_FILE
        ),
        source=source.description,
        protocol=protocol,
    )
    storage.write_text(join(out_url, CATALOG_FILE), manifest.model_dump_json(indent=1))
    _remove_unnamed(storage, out_url, manifest)
    return manifest


def _write_protocol(storage: Storage, out_url: str, source: SourceTable, packed_ids: set[str]) -> ProtocolInfo:
    """The source's query list as it was published (rows of rejected queries included: evaluate counts them)."""
    protocol: SourceProtocol = source.protocol
    if source.splits is None:
        raise CatalogError(f"{out_url}: a source's own query list needs the source's own splits; nothing published")
    gallery = set(source.table["id"].filter(pa.array(source.splits.split == "gallery")).to_pylist())
    outside = sorted(set(protocol.query.tolist()) - gallery)
    if outside:
        raise CatalogError(
            f"{out_url}: {len(outside)} query id(s) of the source's query list are not gallery images (e.g. "
            f"{outside[0]!r}); nothing published"
        )
    a = len(source.schema.names)
    table = pa.table(
        {
            "query": pa.array(protocol.query.tolist(), pa.string()),
            "change": pa.FixedSizeListArray.from_arrays(
                pa.array(protocol.change.astype(np.int16).reshape(-1)), a
            ),  # (M, A)
            "target": pa.FixedSizeListArray.from_arrays(
                pa.array(protocol.target.astype(np.int16).reshape(-1)), a
            ),  # (M, A)
        }
    )
    path, fingerprint = _write_artifact(storage, out_url, "protocol", table)
    queries = set(protocol.query.tolist())
    return ProtocolInfo(
        path=path,
        fingerprint=fingerprint,
        rows=len(protocol.query),
        queries=len(queries),
        rejected_queries=len(queries - packed_ids),
        source=protocol.source,
    )


def _write_artifact(storage: Storage, out_url: str, prefix: str, table: pa.Table) -> tuple[str, str]:
    """``<prefix>-<sha12>.parquet`` beside catalog.json: never rewritten with other content under the same name."""
    data = _parquet_bytes(table)
    fingerprint = "sha256:" + hashlib.sha256(data).hexdigest()
    path = f"{prefix}-{short_fingerprint(fingerprint)}.parquet"
    storage.write_bytes(join(out_url, path), data)
    return path, fingerprint


def _remove_unnamed(storage: Storage, out_url: str, manifest: CatalogManifest) -> None:
    """Shards, split and protocol files of earlier packs that the new catalog.json does not name, and the
    temporary files (``<name>.tmp-<hex>``, Storage.write_bytes on a local disk) of writes a killed pack left."""
    named = {s.path for s in manifest.shards} | {manifest.splits.path}
    if manifest.protocol is not None:
        named.add(manifest.protocol.path)
    for name in storage.listdir(join(out_url, SHARD_DIR)):
        if f"{SHARD_DIR}/{name}" not in named and (name.endswith(".parquet") or ".parquet.tmp-" in name):
            storage.remove(join(out_url, SHARD_DIR, name))
    for name in storage.listdir(out_url):
        unnamed = name.startswith(("splits-", "protocol-")) and name.endswith(".parquet") and name not in named
        base = name.split(".tmp-")[0]
        unfinished = ".tmp-" in name and (
            base in {CATALOG_FILE, REJECTED_FILE, "config.yaml"} or base.startswith(("splits-", "protocol-"))
        )
        if unnamed or unfinished:
            storage.remove(join(out_url, name))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="ZSTD")
    return sink.getvalue().to_pybytes()

"""Write catalog shards: the Ray Data callable class of the pack job.

A batch holds the rows of one shard (column ``shard``; several are handled too). For each shard the writer
reads every image once, decodes it to validate it and record its size, keeps the original bytes, writes
``shards/part-NNNNN-<fingerprint>.parquet`` and returns one stats row (rows, fingerprint, rejected images).

Shard names carry the first 12 hex digits of the file's SHA-256 (the fingerprint in catalog.json): a file
is never rewritten with other content, so a re-pack cannot change a shard under a catalog.json that names
it, and an unchanged shard keeps its name (a re-pack of the same input writes nothing new).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fsnet.catalog.image_check import ImageRejected, check_image
from fsnet.fingerprint import short_fingerprint
from fsnet.storage import Storage, join, protocol_of

SHARD_DIR = "shards"
IO_THREADS = 32  # concurrent object-store GETs per writer: S3 latency, not bandwidth, bounds small images

REJECTED_TYPE = pa.struct(
    [("id", pa.string()), ("image", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)
STATS_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("path", pa.string()),  # relative to the catalog; null when every row was rejected
        ("rows", pa.int64()),
        ("fingerprint", pa.string()),
        ("bytes", pa.int64()),
        ("input_rows", pa.int64()),
        ("rejected", pa.list_(REJECTED_TYPE)),
        ("seconds", pa.float64()),  # time this shard took inside the writer (read, decode, encode, write)
    ]
)


def shard_name(index: int, fingerprint: str) -> str:
    return f"{SHARD_DIR}/part-{index:05d}-{short_fingerprint(fingerprint)}.parquet"


class ShardWriter:
    def __init__(
        self,
        storage: Storage,
        out_url: str,
        attributes: list[str],
        extra_columns: list[str],
        formats: list[str],
        row_group_rows: int,
    ):
        self.storage = storage
        self.out_url = out_url
        self.attributes = attributes
        self.extra_columns = extra_columns
        self.formats = formats
        self.row_group_rows = row_group_rows
        self.pool = ThreadPoolExecutor(IO_THREADS)

    def __call__(self, batch: pa.Table) -> pa.Table:
        stats = [
            self.write_shard(int(s), batch.filter(pc.equal(batch["shard"], s)))
            for s in pc.unique(batch["shard"]).to_pylist()
        ]
        return pa.Table.from_pylist(stats, schema=STATS_SCHEMA)

    def write_shard(self, index: int, rows: pa.Table) -> dict:
        start = time.perf_counter()
        ids, names = rows["id"].to_pylist(), rows["image"].to_pylist()
        keep, blobs, widths, heights, rejected = [], [], [], [], []
        for i, blob in enumerate(self._fetch(rows["image_url"].to_pylist())):
            try:
                if isinstance(blob, ImageRejected):
                    raise blob  # missing or unreadable: listed like an image that fails to decode
                _, width, height = check_image(blob, self.formats)
            except ImageRejected as rej:
                rejected.append({"id": ids[i], "image": names[i], "reason": rej.reason, "detail": rej.detail})
                continue
            keep.append(i)
            blobs.append(blob)
            widths.append(width)
            heights.append(height)
        path, fingerprint, size = None, None, 0
        if keep:
            taken = rows.take(pa.array(keep, pa.int64()))
            data = self._encode(
                pa.table(
                    {
                        "id": taken["id"],
                        "image": pa.array(blobs, pa.binary()),
                        **{a: taken[a] for a in self.attributes},
                        "width": pa.array(widths, pa.int32()),
                        "height": pa.array(heights, pa.int32()),
                        **{c: taken[c] for c in self.extra_columns},
                    }
                )
            )
            fingerprint = "sha256:" + hashlib.sha256(data).hexdigest()
            path, size = shard_name(index, fingerprint), len(data)
            url = join(self.out_url, path)
            if not self._holds(url, fingerprint):  # the name is the content: an intact existing file is this one
                self.storage.write_bytes(url, data)  # new, or damaged since (its bytes no longer match its name)
        return {
            "shard": index,
            "path": path,
            "rows": len(keep),
            "fingerprint": fingerprint,
            "bytes": size,
            "input_rows": rows.num_rows,
            "rejected": rejected,
            "seconds": time.perf_counter() - start,
        }

    def _holds(self, url: str, fingerprint: str) -> bool:
        """True when ``url`` exists with exactly these bytes (one read: a re-pack repairs a damaged shard)."""
        if not self.storage.exists(url):
            return False
        return "sha256:" + hashlib.sha256(self.storage.read_bytes(url)).hexdigest() == fingerprint

    def _encode(self, table: pa.Table) -> bytes:
        # JPEG/PNG bytes do not compress: spend no CPU on them; labels and ids compress well.
        compression = {name: ("NONE" if name == "image" else "ZSTD") for name in table.column_names}
        sink = pa.BufferOutputStream()
        # One chunk per column: the bytes (and so the shard's name) depend on the rows only, not on how Arrow
        # happened to chunk them on the way here.
        pq.write_table(table.combine_chunks(), sink, row_group_size=self.row_group_rows, compression=compression)
        return sink.getvalue().to_pybytes()

    def _fetch(self, urls: list[str]) -> list[bytes | ImageRejected]:
        def read(url: str) -> bytes | ImageRejected:
            fs, path = self.storage.fs(url)
            try:
                return fs.cat_file(path)
            except FileNotFoundError:
                return ImageRejected("missing", f"no file at {url}")
            except (IsADirectoryError, PermissionError, OSError) as err:
                return ImageRejected("unreadable", f"{type(err).__name__}: {err}")

        if urls and protocol_of(urls[0]) == "file":
            return [read(u) for u in urls]
        return list(self.pool.map(read, urls))


def rejected_rows(stats: pa.Table) -> list[dict]:
    """All rejected rows of a stats table, in shard order."""
    order = np.argsort(stats["shard"].to_numpy())
    return [r for i in order for r in stats["rejected"][int(i)].as_py()]

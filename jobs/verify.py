"""Check a packed catalog or an index on storage before trusting it (or after a job failed reading it).

Local:
    fsnet verify fsnet-demo/catalog
    fsnet verify fsnet-demo/index
Object store (the same command; credentials from the environment or --set storage.*):
    fsnet verify s3://b/catalogs/shop
Before a scheduled re-index:
    fsnet reindex --verify --catalog s3://b/catalogs/shop --index s3://b/index/shop

A catalog: every shard, the split file and the stored query list are re-hashed and compared with the sha256
fingerprints catalog.json recorded when they were packed (every byte is read).
An index: its MANIFEST.json records no hashes of the index's own files, so this checks what can be checked
honestly: the files the live version names are present and decode (faiss loads, every Parquet page of the ids and
embedding files decodes, an older version's memory.pt loads), their row counts match the manifest, and the model's
bytes match the sha256 the manifest recorded. A flipped bit inside a float column that still decodes goes unnoticed
(Parquet pages are written without checksums).

No Ray. Exit 0 when all is well; otherwise one line per bad file on stderr, naming it, and exit 2.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Annotated

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch
import typer

from fsnet.catalog.integrity import REPAIR_HINT
from fsnet.catalog.manifest import CATALOG_FILE
from fsnet.catalog.reader import Catalog
from fsnet.errors import CatalogError, FsnetError
from fsnet.fingerprint import short_fingerprint
from fsnet.index.faiss_index import index_from_bytes
from fsnet.index.manifest import (
    CURRENT_FILE,
    MANIFEST_FILE,
    read_current,
    read_manifest,
    version_name,
)
from fsnet.storage import Storage, join
from jobs.command import (
    ConfigOption,
    SetOption,
    absolute_option,
    console,
    err_console,
    resolve_config,
    run_app,
    single_command,
)


@dataclass
class Verdict:
    summary: str  # what was checked, one line
    problems: list[str] = field(default_factory=list)  # one line per bad file, naming it


def verify(storage: Storage, url: str) -> Verdict:
    """A catalog (catalog.json at ``url``) or an index (CURRENT at ``url``)."""
    if storage.exists(join(url, CATALOG_FILE)):
        return verify_catalog(storage, url)
    if storage.exists(join(url, CURRENT_FILE)):
        return verify_index(storage, url)
    raise FsnetError(f"{url}: neither a catalog ({CATALOG_FILE}) nor an index ({CURRENT_FILE}) is there")


def verify_catalog(storage: Storage, url: str) -> Verdict:
    catalog = Catalog.open(url, storage)
    m = catalog.manifest
    files = len(m.shards) + 1 + (m.protocol is not None)
    summary = (
        f"{url}: catalog of {m.rows:,} rows; {files} file(s) ({len(m.shards)} shard(s), the split file"
        + (", the query list" if m.protocol is not None else "")
        + ") re-hashed"
    )
    problems = catalog.verify()
    if problems:
        return Verdict(f"{summary}: {len(problems)} bad; {REPAIR_HINT} (fsnet pack)", problems)
    return Verdict(f"{summary}: every byte matches {CATALOG_FILE}")


def require_intact_catalog(storage: Storage, url: str) -> str:
    """``fsnet reindex --verify``: what was checked when every file matches; else one CatalogError naming the first
    bad file. The index job cannot tell on its own: a shard's fingerprint in catalog.json is what it compares."""
    verdict = verify_catalog(storage, url)
    if verdict.problems:
        more = f" (and {len(verdict.problems) - 1} more file(s))" if len(verdict.problems) > 1 else ""
        raise CatalogError(
            f"{verdict.problems[0]}{more}: {REPAIR_HINT} before re-indexing (fsnet verify {url} lists every bad file)"
        )
    return verdict.summary


def verify_index(storage: Storage, url: str) -> Verdict:
    version = read_current(storage, url)
    current = join(url, CURRENT_FILE)
    if version is None:
        return Verdict(f"{url}: index", [f"{current}: does not name a version (v<N>)"])
    vdir = join(url, version_name(version))
    try:
        m = read_manifest(storage, url, version)
    except Exception as err:  # noqa: BLE001 - missing, not JSON, not this fsnet's manifest: nothing else can be checked
        return Verdict(
            f"{url}: index v{version}", [f"{join(vdir, MANIFEST_FILE)}: cannot be read ({_first_line(err)})"]
        )

    problems: list[str] = []

    def check(file_url: str, fn) -> None:
        """Run one file's check; a missing file or one that does not decode is one line naming it."""
        if not storage.exists(file_url):
            problems.append(f"{file_url}: missing")
            return
        try:
            problem = fn()
        except Exception as err:  # noqa: BLE001 - whatever the decoder raises on damaged bytes
            problem = f"cannot be read ({_first_line(err)})"
        if problem:
            problems.append(f"{file_url}: {problem}")

    def rows_problem(found: int, expected: int, what: str) -> str | None:
        return None if found == expected else f"{found:,} {what}, {MANIFEST_FILE} says {expected:,}"

    files = m.files
    check(
        join(vdir, files["index"]),
        lambda: rows_problem(
            index_from_bytes(storage.read_bytes(join(vdir, files["index"])), use_gpu=False).ntotal, m.indexed, "vectors"
        ),
    )
    check(join(vdir, files["ids"]), lambda: _ids_problem(storage.read_bytes(join(vdir, files["ids"])), m.indexed))
    if "memory" in files:  # versions written before the index stopped copying the memory block
        check(join(vdir, files["memory"]), lambda: _memory_problem(storage.read_bytes(join(vdir, files["memory"]))))
    embedded: list[str] = []  # every embedding row's id: one row per image, across the folders
    for s in m.shards:
        folder = join(vdir, s.embeddings)

        def counted(folder: str = folder, expected: int = s.rows) -> str | None:
            return rows_problem(_embedding_rows(storage, folder, embedded), expected, "embedding rows")

        check(folder, counted)
    if (repeated := _repeated(embedded)) is not None:
        problems.append(f"{join(vdir, files['embeddings'])}: {repeated}")
    check(
        m.model.url,
        lambda: (
            None
            if _sha256(storage.read_bytes(m.model.url)) == m.model.sha256
            else "bytes changed since the index was built "
            f"(sha256 {short_fingerprint(_sha256(storage.read_bytes(m.model.url)))}..., "
            f"{MANIFEST_FILE}: {short_fingerprint(m.model.sha256)}...)"
        ),
    )

    summary = (
        f"{url}: index v{version} of {m.indexed:,} rows; faiss index, ids{', memory' if 'memory' in files else ''} "
        f"and {len(m.shards)} embedding folder(s) decoded and counted, the model's sha256 checked ({MANIFEST_FILE} "
        f"holds no hashes of the index's own files); its catalog: fsnet verify {m.catalog}"
    )
    if problems:
        return Verdict(f"{summary}: {len(problems)} bad; build a fresh index (fsnet index --out <a new URL>)", problems)
    return Verdict(f"{summary}: all well")


def _embedding_rows(storage: Storage, folder: str, ids: list[str]) -> int:
    """Rows of one catalog shard's embedding files, every column decoded (a damaged page raises); their ids are
    appended to ``ids``."""
    fs, path = storage.arrow_fs(folder)
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table()
    ids.extend(table["id"].to_pylist())
    return table.num_rows


def _ids_problem(data: bytes, indexed: int) -> str | None:
    """The faiss positions' ids: as many as the manifest indexed, each once (a search would return an image twice)."""
    ids = pq.read_table(io.BytesIO(data))["id"].to_pylist()
    if len(ids) != indexed:
        return f"{len(ids):,} ids, {MANIFEST_FILE} says {indexed:,}"
    return _repeated(ids)


def _repeated(ids: list[str]) -> str | None:
    """None when every id is there once; else a line naming how many repeat and the first few."""
    seen, twice = set(), []
    for i in ids:
        if i in seen:
            twice.append(i)
        seen.add(i)
    if not twice:
        return None
    return f"{len(twice):,} id(s) more than once (e.g. {', '.join(sorted(set(twice))[:5])}): one image, several rows"


def _memory_problem(data: bytes) -> str | None:
    memory = torch.load(io.BytesIO(data), weights_only=True)
    missing = [k for k in ("table", "counts", "num_values") if k not in memory]
    return f"no {', '.join(missing)} in it" if missing else None


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _first_line(err: BaseException) -> str:
    printable = "".join(c if c.isprintable() or c == "\n" else " " for c in str(err))  # decoders quote raw bytes
    lines = [line.strip() for line in printable.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def cli(
    url: Annotated[
        str, typer.Argument(callback=absolute_option, help="A packed catalog (catalog.json) or an index (CURRENT) URL.")
    ],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Re-hash a catalog's shards against catalog.json, or check that an index's files decode and add up."""
    cfg = resolve_config(config, set_)
    verdict = verify(Storage(cfg.storage), url)
    for problem in verdict.problems:
        err_console.print(f"[bold red]bad:[/] {problem}", soft_wrap=True, highlight=False)
    console.print(verdict.summary, soft_wrap=True, highlight=False)
    if verdict.problems:
        raise typer.Exit(2)


if __name__ == "__main__":
    run_app(single_command(cli))

"""Index a catalog: embedding shards, a faiss index of the gallery's global representations and MANIFEST.json as a
new version <out>/v<N>/, then <out>/CURRENT (written last: readers never see a half-built index).

Local:
    fsnet index --model fsnet-demo/run/model.pt --catalog fsnet-demo/catalog --out fsnet-demo/index
    fsnet reindex --catalog fsnet-demo/catalog --index fsnet-demo/index   # only new or changed shards (jobs/reindex.py)
Cluster (GPU actors decode with nvJPEG and embed in fp16):
    ray job submit --working-dir . -- python -m jobs.index --model s3://b/runs/shop/model.pt \\
        --catalog s3://b/catalogs/shop --out s3://b/index/shop
Schedule (cron, every night at 02:00; three crontab lines):
    CATALOG=s3://b/catalogs/shop
    INDEX=s3://b/index/shop
    0 2 * * *  cd /opt/fsnet && .venv/bin/fsnet reindex --catalog $CATALOG --index $INDEX >> reindex.log 2>&1

The chain: read_parquet of the catalog shards to extract (projected columns, the split's ids filtered in the scan)
-> tag each row with its catalog shard -> EmbedImages actors (decode, embed, global representation) ->
write_parquet partitioned by catalog shard -> faiss index over every indexed row -> manifest -> CURRENT.
Unchanged catalog shards (same fingerprint, same model) are copied from the live version instead of re-extracted;
a delta of at most index.in_process_max images is embedded in this process by the same EmbedImages, without
starting Ray, and so is any number where the pool would be one CPU actor (jobs/embed_rows.py ``embeds_here``). One
run writes an index at a time: it holds <out>/WRITER throughout (fsnet/index/writer_lock.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Callable, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import typer
from rich.table import Table

import fsnet
from fsnet.catalog.manifest import ShardInfo
from fsnet.catalog.reader import Catalog
from fsnet.columns import column_array, parquet_bytes
from fsnet.config import Config, saved_config_text
from fsnet.embedding import EmbedImages
from fsnet.errors import CatalogError, FsnetError
from fsnet.fingerprint import short_fingerprint
from fsnet.index.faiss_index import build_index, index_bytes
from fsnet.index.manifest import (
    CURRENT_FILE,
    MANIFEST_FILE,
    CoveredShard,
    IndexManifest,
    ModelRef,
    RejectedImage,
    is_refused,
    read_current,
    read_manifest,
    version_name,
    versions,
    write_current,
)
from fsnet.index.writer_lock import WriterLock
from fsnet.model.checkpoint import model_from_bytes
from fsnet.schema_match import SchemaMatch
from fsnet.storage import Storage, join
from fsnet.timing import timed
from jobs import interrupt
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.embed_rows import embed_here, embed_rows, embeds_here
from jobs.progress import count_bar, pipeline_bar
from jobs.ray_runtime import init_ray
from jobs.tables import show

EMBEDDINGS = "embeddings"
ID_READERS = 8  # catalog shards whose id column is read at once when planning a run: round trips overlap
KEEP_VERSIONS = 2  # the live version and the one before it: a reader that opened it a moment ago can finish


@dataclass
class IndexResult:
    manifest: IndexManifest | None  # None when nothing changed
    message: str


@dataclass
class IndexPlan:
    """What a run does with the live version: which catalog shards it copies from there, extracts or drops."""

    current: int | None  # the live version (CURRENT names it); None: a new index
    reusable: IndexManifest | None  # the live version when built with the same model and split, else None
    reuse: list[ShardInfo]  # catalog shards whose embedding rows are copied from ``reusable`` as they are
    extract: list[ShardInfo]  # catalog shards embedded by this run
    dropped: list[str]  # fingerprints ``reusable`` covers that the catalog no longer has
    up_to_date: bool  # nothing to do: every shard reused, none dropped, same faiss kind, same split file
    extract_rows: int  # the rows of ``extract`` that the split asks for: what this run embeds
    needed: dict[str, set[str]]  # catalog shard fingerprint -> the ids of the split in it
    held: dict[str, set[str]]  # catalog shard fingerprint -> the ids the reusable version has rows of


def index(
    cfg: Config,
    model_url: str,
    catalog_url: str,
    out: str,
    split: Literal["gallery", "all"] = "gallery",
    before_publish: Callable[[int, int | None], str] | None = None,
) -> IndexResult:
    """``before_publish(version, live)``: called once the new version is complete, before CURRENT names it (the
    re-index gate, jobs/gate.py); it returns a line to print, or raises to leave CURRENT where it is."""
    start = time.perf_counter()
    storage = Storage(cfg.storage)
    catalog = Catalog.open(catalog_url, storage)
    model_data = storage.read_bytes(model_url)
    model = model_from_bytes(model_data, origin=model_url).eval()
    match = SchemaMatch.of(model.schema, catalog.schema, model_url, catalog_url)  # an attribute on one side stops here
    if match.note():  # the index keeps the catalog's labels; readers translate them (fsnet/schema_match.py)
        console.print(match.note())
    wanted = None if split == "all" else set(catalog.split_ids(split).tolist())
    model_sha = "sha256:" + hashlib.sha256(model_data).hexdigest()
    storage.check_output_folder(out, "the index")
    with WriterLock.acquire(storage, out):  # one writer per index (fsnet/index/writer_lock.py): else one line
        plan = plan_reuse(storage, out, catalog, wanted, model_sha, split, cfg.index.kind)
        # before "nothing to do": it removes a stopped run's leftovers (a running one holds the lock)
        version = _clean_stale(storage, out, plan.current)
        if plan.up_to_date:
            return IndexResult(
                None,
                f"{out}: v{plan.current} already covers every shard of {catalog_url} with this model; nothing to do",
            )

        vdir = join(out, version_name(version))
        partial = version_name(version)
        interrupt.if_stopped_now(
            f"{out}: CURRENT still {_named(plan.current)}; the partial {partial} is removed by the next run"
        )
        timings: dict[str, float] = {}
        with timed(timings, "copy_reused"):
            _copy_reused(storage, out, vdir, plan)
        with timed(timings, "extract"):
            # a few (no Ray started for them), or the pool would be one CPU actor: in this process
            if plan.extract and embeds_here(cfg, plan.extract_rows):
                _extract_here(cfg, storage, model_url, catalog, split, plan, vdir, model.cfg.image_size)
            elif plan.extract:
                init_ray(cfg.ray)
                _extract(cfg, storage, model_url, catalog, split, plan, vdir, model.cfg.image_size)
        with timed(timings, "faiss"):
            table = _indexed_rows(storage, vdir, wanted)  # every row of the split, failed ones included
            ok = table.filter(pc.is_null(table["error"]))
            if ok.num_rows == 0:
                raise CatalogError(f"{catalog_url}: no image of the {split} split could be embedded; nothing to index")
            vectors = column_array(ok, "global", (-1,))  # (N, r)
            faiss_index = build_index(vectors, cfg.index.kind)
        timings.update(_busy(table, plan.extract))

        storage.write_bytes(join(vdir, "index.faiss"), index_bytes(faiss_index))
        storage.write_bytes(join(vdir, "ids.parquet"), parquet_bytes(pa.table({"id": ok["id"]})))
        bad = table.filter(pc.is_valid(table["error"]))
        manifest = IndexManifest(
            format=1,
            fsnet_version=fsnet.__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            version=version,
            catalog=catalog_url,
            split=split,
            splits_fingerprint=catalog.manifest.splits.fingerprint,
            model=ModelRef(url=model_url, sha256=model_sha),
            attributes=catalog.schema.attributes,
            embed_dim=model.cfg.embed_dim,
            global_dim=int(vectors.shape[1]) if len(vectors) else model.global_dim,
            image_size=model.cfg.image_size,
            index_kind=cfg.index.kind,
            shards=_covered(table, catalog, plan),
            indexed=ok.num_rows,
            rejected=[
                RejectedImage(id=i, catalog_shard=c, reason=e)
                for i, c, e in zip(bad["id"].to_pylist(), bad["catalog_shard"].to_pylist(), bad["error"].to_pylist())
            ],
            timings={**timings, "total": time.perf_counter() - start},
            files={"index": "index.faiss", "ids": "ids.parquet", "embeddings": EMBEDDINGS},
        )
        storage.write_text(join(vdir, "config.yaml"), saved_config_text(cfg))
        storage.write_text(join(vdir, MANIFEST_FILE), manifest.model_dump_json(indent=1))
        checked = before_publish(version, plan.current) if before_publish else None
        write_current(storage, out, version)  # last: from here on readers see v<version>
        interrupt.if_stopped_now(f"{out}: {version_name(version)} published (CURRENT names it)")
        _remove_old(storage, out, version)
        what = f"{len(plan.extract)} shard(s) extracted" + (
            f", {len(plan.reuse)} reused, {len(plan.dropped)} dropped" if plan.reusable else ""
        )
        published = (
            f"{out}: published v{version} ({manifest.indexed:,} rows, {len(manifest.rejected)} rejected; {what})"
        )
        return IndexResult(manifest, f"{checked}\n{published}" if checked else published)


def plan_reuse(
    storage: Storage,
    out: str,
    catalog: Catalog,
    wanted: set[str] | None,
    model_sha: str,
    split: str,
    index_kind: str,
) -> IndexPlan:
    """The live version is reusable when built with the same model (by sha256) and split; of its catalog shards,
    those still in the catalog (same fingerprint) whose embedding rows hold every wanted id (``wanted``: the split's
    ids, None for all) are copied, the others extracted; shards it covers that the catalog lost are dropped."""
    current = read_current(storage, out)
    previous = read_manifest(storage, out, current) if current is not None else None
    reusable = previous if previous and previous.model.sha256 == model_sha and previous.split == split else None
    shards = catalog.manifest.shards
    needed = _ids_per_shard(catalog, wanted)  # fingerprint -> ids of the split in that shard
    held = _embedded_ids(storage, out, reusable) if reusable is not None else {}
    reuse = [
        s
        for s in shards
        if reusable is not None and s.fingerprint in reusable.covered and needed[s.fingerprint] <= held[s.fingerprint]
    ]
    extract = [s for s in shards if s not in reuse]
    packed = {s.fingerprint for s in shards}
    dropped = [] if reusable is None else [fp for fp in reusable.covered if fp not in packed]
    up_to_date = (
        reusable is not None
        and not extract
        and not dropped
        and reusable.index_kind == index_kind
        and reusable.splits_fingerprint == catalog.manifest.splits.fingerprint
    )
    extract_rows = sum(len(needed[s.fingerprint]) for s in extract)
    return IndexPlan(current, reusable, reuse, extract, dropped, up_to_date, extract_rows, needed, held)


def _copy_reused(storage: Storage, out: str, vdir: str, plan: IndexPlan) -> None:
    """Unchanged catalog shards: their embedding rows from the live version into the new one, as they are; a shard
    some of whose rows have left the split since (a re-pack moved an image from the gallery to training) is
    written again without them, so that the folder holds what the manifest counts and faiss indexes."""
    for s in plan.reuse:
        source = join(join(out, version_name(plan.reusable.version)), plan.reusable.covered[s.fingerprint].embeddings)
        target = join(vdir, _shard_dir(s))
        if plan.held[s.fingerprint] == plan.needed[s.fingerprint]:
            _copy_tree(storage, source, target)
            continue
        fs, path = storage.arrow_fs(source)
        rows = pads.dataset(path, filesystem=fs, format="parquet").to_table()
        kept = rows.filter(pc.is_in(rows["id"], pa.array(sorted(plan.needed[s.fingerprint]), pa.string())))
        storage.write_bytes(join(target, "part-0.parquet"), parquet_bytes(kept))


def _extract(
    cfg: Config,
    storage: Storage,
    model_url: str,
    catalog: Catalog,
    split: str,
    plan: IndexPlan,
    vdir: str,
    image_size: int,
) -> None:
    """read_parquet of the plan's shards to extract (the split's rows, tagged with their shard) -> EmbedImages
    actors -> write_parquet partitioned by catalog shard under <vdir>/embeddings."""
    fs, path = storage.arrow_fs(join(vdir, EMBEDDINGS))
    rows = catalog.dataset(
        None if split == "all" else split,
        ["id", "image", *catalog.schema.names],
        shards=[s.fingerprint for s in plan.extract],
        with_shard=True,
    )
    with catalog.reading(), pipeline_bar("index", plan.extract_rows, EmbedImages.__name__):  # a bad shard: one line
        embedded = embed_rows(cfg, storage, model_url, catalog, rows, with_shard=True, image_size=image_size)
        embedded.write_parquet(path, filesystem=fs, partition_cols=["catalog_shard"])


def _extract_here(
    cfg: Config,
    storage: Storage,
    model_url: str,
    catalog: Catalog,
    split: str,
    plan: IndexPlan,
    vdir: str,
    image_size: int,
) -> None:
    """Images embedded in this process by the same EmbedImages (jobs/embed_rows.py ``embeds_here``: a few, up to
    index.in_process_max, without starting Ray, as its start and the pool's cost more than a few hundred images,
    bench/reindex_bench.py; or any number where the pool would be one CPU actor), shard by shard, and written where
    the actor pool writes them (one folder per catalog shard)."""
    with catalog.reading(), count_bar("index", plan.extract_rows) as advance:  # a shard that cannot be read: a line
        read = None if split == "all" else split
        shards = embed_here(cfg, storage, model_url, catalog, read, plan.extract, image_size, advance=advance)
        for shard, rows in shards:  # a shard with no image of the split has no folder, as the pool writes none
            storage.write_bytes(join(vdir, _shard_dir(shard), "part-0.parquet"), parquet_bytes(rows))


def _indexed_rows(storage: Storage, vdir: str, wanted: set[str] | None) -> pa.Table:
    """The new version's embedding rows (id, error, global, catalog_shard, busy times) of the wanted ids."""
    table = _read_embeddings(storage, vdir, ["id", "error", "global", "catalog_shard", "t_decode", "t_model"])
    if wanted is not None:  # reused shards may hold rows that have left the split since
        table = table.filter(pc.is_in(table["id"], pa.array(sorted(wanted), pa.string())))
    return table


def _busy(table: pa.Table, extracted: list[ShardInfo]) -> dict[str, float]:
    """Decode and model seconds of the rows this run extracted, summed over actors."""
    fresh = table.filter(
        pc.is_in(table["catalog_shard"], pa.array([short_fingerprint(s.fingerprint) for s in extracted], pa.string()))
    )
    return {
        "decode_busy": float(pc.sum(fresh["t_decode"]).as_py() or 0.0),
        "model_busy": float(pc.sum(fresh["t_model"]).as_py() or 0.0),
    }


def _covered(table: pa.Table, catalog: Catalog, plan: IndexPlan) -> list[CoveredShard]:
    """One manifest entry per catalog shard: its rows of the split, indexed and rejected, and where they came from."""
    covered = []
    for s in catalog.manifest.shards:
        rows_of = table.filter(pc.equal(table["catalog_shard"], short_fingerprint(s.fingerprint)))
        failed = int(pc.sum(pc.is_valid(rows_of["error"])).as_py() or 0)
        covered.append(
            CoveredShard(
                fingerprint=s.fingerprint,
                catalog_path=s.path,
                embeddings=_shard_dir(s),
                rows=rows_of.num_rows,
                indexed=rows_of.num_rows - failed,
                rejected=failed,
                reused_from=plan.reusable.version if s in plan.reuse else None,
            )
        )
    return covered


def _ids_per_shard(catalog: Catalog, wanted: set[str] | None) -> dict[str, set[str]]:
    """fingerprint -> ids of the wanted rows (all when None) in that shard (the id column only, several shards at
    once: each read waits on storage, and on S3 on a round trip)."""
    shards = catalog.manifest.shards
    with catalog.reading(), ThreadPoolExecutor(max_workers=ID_READERS) as pool:  # a bad shard: one line naming it
        ids = list(pool.map(catalog.shard_ids, shards))
    return {s.fingerprint: set(i) if wanted is None else set(i) & wanted for s, i in zip(shards, ids)}


def _embedded_ids(storage: Storage, out: str, manifest: IndexManifest) -> dict[str, set[str]]:
    """Catalog shard fingerprint -> the ids with embedding rows in a version's folder of that shard (every shard
    the version covers; one scan of the id column over the version's embeddings)."""
    held: dict[str, set[str]] = {fp: set() for fp in manifest.covered}
    vdir = join(out, version_name(manifest.version))
    if not storage.listdir(join(vdir, EMBEDDINGS)):
        return held
    table = _read_embeddings(storage, vdir, ["id", "catalog_shard"])
    by_short = {short_fingerprint(fp): fp for fp in manifest.covered}
    for image_id, shard in zip(table["id"].to_pylist(), table["catalog_shard"].to_pylist()):
        if shard in by_short:
            held[by_short[shard]].add(image_id)
    return held


def _shard_dir(shard: ShardInfo) -> str:
    return f"{EMBEDDINGS}/catalog_shard={short_fingerprint(shard.fingerprint)}"


def _read_embeddings(storage: Storage, vdir: str, columns: list[str]) -> pa.Table:
    fs, path = storage.arrow_fs(join(vdir, EMBEDDINGS))
    if not storage.listdir(join(vdir, EMBEDDINGS)):
        raise CatalogError(f"{vdir}: no embedding rows: the split has no images in the catalog")
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=columns)


def _copy_tree(storage: Storage, source: str, target: str) -> None:
    """Copy a folder's files (server-side on object stores)."""
    fs, _ = storage.fs(target)
    fs.makedirs(storage.fs(target)[1], exist_ok=True)
    for name in storage.listdir(source):
        fs.copy(storage.fs(join(source, name))[1], storage.fs(join(target, name))[1])


def _clean_stale(storage: Storage, out: str, current: int | None) -> int:
    """Remove versions newer than CURRENT and a CURRENT.tmp-* of a write that did not finish (an interrupted run's
    leftovers), but for the newest version the re-index gate refused (kept to be looked at until the next refusal);
    the new version's number: after every version there is."""
    refused = [v for v in versions(storage, out) if (current is None or v > current) and is_refused(storage, out, v)]
    for v in versions(storage, out):
        if (current is None or v > current) and v != max(refused, default=None):
            fs, path = storage.fs(join(out, version_name(v)))
            fs.rm(path, recursive=True)
    for name in storage.listdir(out):
        if name.startswith(f"{CURRENT_FILE}.tmp-"):  # Storage.write_bytes' temporary file on a local disk
            storage.remove(join(out, name))
    return max([current or 0, *refused]) + 1


def _named(version: int | None) -> str:
    return "absent" if version is None else version_name(version)


def _remove_old(storage: Storage, out: str, live: int) -> None:
    """Keep the live version and the KEEP_VERSIONS - 1 published before it (a version the gate refused is not one
    a reader may have opened)."""
    older = [v for v in versions(storage, out) if v < live]
    published = [v for v in older if not is_refused(storage, out, v)]
    for v in older:
        if v not in published[len(published) - (KEEP_VERSIONS - 1) :]:
            fs, path = storage.fs(join(out, version_name(v)))
            fs.rm(path, recursive=True)


def print_manifest(m: IndexManifest) -> None:
    t = Table(title=f"index v{m.version}", show_header=False)
    t.add_row("catalog", f"{m.catalog} ({m.split})")
    t.add_row("model", f"{m.model.url} ({m.model.sha256[:19]}...)")
    t.add_row("indexed", f"{m.indexed:,} rows, faiss {m.index_kind}, dimension {m.global_dim}")
    t.add_row("shards", f"{len(m.shards)} ({sum(s.reused_from is not None for s in m.shards)} reused)")
    t.add_row(
        "rejected",
        f"{len(m.rejected)}"
        + (f": {', '.join(r.id for r in m.rejected[:5])}{' ...' if len(m.rejected) > 5 else ''}" if m.rejected else ""),
    )
    timings = m.timings
    extracted = sum(s.rows for s in m.shards if s.reused_from is None)
    rate = f" ({extracted / timings['extract']:,.0f} images/s)" if timings.get("extract") and extracted else ""
    t.add_row(
        "time",
        f"extract {timings.get('extract', 0):.1f} s{rate}: decode busy {timings.get('decode_busy', 0):.1f} s, "
        f"model busy {timings.get('model_busy', 0):.1f} s; faiss {timings.get('faiss', 0):.1f} s; "
        f"total {timings.get('total', 0):.1f} s",
    )
    show(console, t, keep=2)


def cli(
    model: Annotated[str, typer.Option("--model", callback=absolute_option, help="model.pt URL from fsnet train.")],
    catalog: Annotated[str, typer.Option("--catalog", callback=absolute_option, help="Packed catalog URL.")],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", callback=absolute_option, help="Index URL (versions under it, CURRENT names the live one)."
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="gallery (the evaluation's) or all.")] = "gallery",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Extract attribute representations with Ray Data actors and publish a new faiss index version."""
    if split not in ("gallery", "all"):
        raise FsnetError(f"--split {split}: gallery or all")
    cfg = resolve_config(config, set_)
    result = index(cfg, model, catalog, out, split)  # type: ignore[arg-type]
    if result.manifest is not None:
        print_manifest(result.manifest)
    console.print(result.message)


if __name__ == "__main__":
    run_app(single_command(cli))

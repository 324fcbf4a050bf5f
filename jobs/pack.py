"""Pack a source catalog (folder + label table, CelebA, ADDE's split files) into Parquet shards with catalog.json.

Local (starts Ray in this process):
    fsnet pack --config fashion_product_small --source ../shared/data/fashion-product-small --out ./catalogs/fps
    python -m jobs.pack --config synthetic --source ./fsnet-demo/synth --out ./fsnet-demo/catalog
    fsnet pack --source /data/adde/splits/Shopping100k --kind adde --set source.images=/data/shopping100k/Images \\
        --out ./catalogs/s100k
Cluster:
    ray job submit --working-dir . -- python -m jobs.pack --source s3://bucket/raw/shop --out s3://bucket/catalogs/shop

The chain: read and validate the label table in the driver (duplicate ids or missing columns stop here,
before anything is written) -> re-packing to an existing catalog: its value codes and shard assignment kept
(fsnet/catalog/repack.py) -> one Arrow block of (id, image URL, labels) per shard -> ShardWriter actors read,
decode and write each shard -> split, rejected.csv, catalog.json (last) -> old shards removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
import typer
from rich.table import Table

from fsnet.catalog.manifest import CatalogManifest, ShardInfo
from fsnet.catalog.publish import publish_catalog
from fsnet.catalog.reader import Catalog
from fsnet.catalog.repack import assign_shards, keep_codes, previous_catalog, previous_shards
from fsnet.catalog.shard_writer import ShardWriter, rejected_rows
from fsnet.catalog.sources import SourceTable, read_source
from fsnet.catalog.splits import assign_splits
from fsnet.config import Config, saved_config_text
from fsnet.errors import CatalogError
from fsnet.storage import Storage, join
from jobs import interrupt
from jobs.command import (
    ConfigOption,
    SetOption,
    absolute_option,
    console,
    resolve_config,
    run_app,
    single_command,
)
from jobs.progress import bar
from jobs.ray_runtime import actor_pool, cluster_cpus, init_ray, one_block_each
from jobs.tables import show


@dataclass
class PackResult:
    manifest: CatalogManifest
    seconds: float  # the whole job, Ray start excluded
    rows_in: int
    writer_seconds: float  # summed over shards: time inside ShardWriter (read, decode, write)
    stage_seconds: float  # wall time of the Ray Data stage
    shards_kept: int = 0  # shards of the previous catalog at this URL published again unchanged (same file)


def pack(cfg: Config, out: str, show_progress: bool = True) -> PackResult:
    start = time.perf_counter()
    storage = Storage(cfg.storage)
    storage.check_output_folder(out)  # before any work: a file there would fail inside the writers, past recognition
    source = read_source(cfg.source, storage)  # validated: nothing is written when this fails
    previous = previous_catalog(storage, out)  # a re-pack keeps its codes and shards; None: a fresh pack
    if previous is not None:
        source = keep_codes(source, previous.schema, out)
    if source.splits is None:  # the seeded rule: its settings fit, before any work (ADDE's files fix their own)
        assign_splits(source.table["id"].to_pylist(), _labels(source), cfg.split)
    groups = _shard_groups(source.table, cfg.catalog.shard_rows, previous)  # one Arrow block per shard

    ray_start = time.perf_counter()
    init_ray(cfg.ray)
    ray_seconds = time.perf_counter() - ray_start
    kept = "catalog.json unchanged" if previous is not None else "no catalog.json yet"
    interrupt.if_stopped_now(f"{out}: {kept}; shard files written so far are removed by the next pack to it")
    actors = min(len(groups), cfg.catalog.pack_actors or cluster_cpus())
    stats = one_block_each(groups).map_batches(
        ShardWriter,
        fn_constructor_kwargs=dict(
            storage=storage,
            out_url=out,
            attributes=source.schema.names,
            extra_columns=source.extra_columns,
            formats=list(cfg.catalog.formats),
            row_group_rows=cfg.catalog.row_group_rows,
        ),
        batch_size=None,  # a whole block: exactly one shard
        batch_format="pyarrow",
        compute=actor_pool(actors),
    )
    stage_start = time.perf_counter()
    collected = _collect(stats, len(source), show_progress)
    stage_seconds = time.perf_counter() - stage_start

    shards, rejected = _check_complete(collected, groups, out)
    manifest = publish_catalog(storage, out, source, shards, rejected, cfg.split)
    interrupt.if_stopped_now(f"{out}: the new catalog.json published")
    storage.write_text(join(out, "config.yaml"), saved_config_text(cfg))
    return PackResult(
        manifest=manifest,
        seconds=time.perf_counter() - start - ray_seconds,
        rows_in=len(source),
        writer_seconds=float(pc.sum(collected["seconds"]).as_py()),
        stage_seconds=stage_seconds,
        shards_kept=0
        if previous is None
        else len({s.path for s in manifest.shards} & {s.path for s in previous.manifest.shards}),
    )


def _labels(source: SourceTable) -> np.ndarray:
    return np.stack([source.table[a].to_numpy() for a in source.schema.names], axis=1)


def _shard_groups(table: pa.Table, shard_rows: int, previous: Catalog | None) -> list[pa.Table]:
    """One table per shard with its ``shard`` index column: append-only onto the previous catalog's shards."""
    kept = [] if previous is None else previous_shards(previous)
    groups = []
    for index, positions in assign_shards(table["id"].to_pylist(), shard_rows, kept):
        rows = table.take(pa.array(positions, pa.int64())).combine_chunks()
        groups.append(rows.append_column("shard", pa.array(np.full(rows.num_rows, index, np.int32))))
    return groups


def _collect(stats: "ray.data.Dataset", total: int, show_progress: bool) -> pa.Table:
    batches = []
    with bar("packing", "images", show_progress) as progress:
        task = progress.add_task("pack", total=total)
        for batch in stats.iter_batches(batch_size=None, batch_format="pyarrow"):
            batches.append(batch)
            progress.advance(task, int(pc.sum(batch["input_rows"]).as_py() or 0))
    return pa.concat_tables(batches)


def _check_complete(collected: pa.Table, groups: list[pa.Table], out: str) -> tuple[list[ShardInfo], list[dict]]:
    """Every shard came back once with every row packed or rejected: never a silently shorter catalog."""
    by_shard = {row["shard"]: row for row in collected.to_pylist()}
    for group in groups:
        index = group["shard"][0].as_py()
        row = by_shard.get(index)
        if row is None or row["rows"] + len(row["rejected"]) != group.num_rows:
            raise CatalogError(f"{out}: shard {index} came back incomplete; nothing published (re-run the pack)")
    shards = [
        ShardInfo(path=r["path"], rows=r["rows"], fingerprint=r["fingerprint"], bytes=r["bytes"])
        for r in sorted(by_shard.values(), key=lambda r: r["shard"])
        if r["rows"] > 0
    ]
    return shards, rejected_rows(collected)


def print_summary(result: PackResult, out: str) -> None:
    m = result.manifest
    summary = Table(title=f"packed {out}", show_header=False)
    summary.add_row("rows in", f"{result.rows_in:,}")
    summary.add_row(
        "packed",
        f"{m.rows:,} in {len(m.shards)} shards ({sum(s.bytes for s in m.shards) / 1e6:,.1f} MB)"
        + (f"; {result.shards_kept} kept unchanged from the previous pack" if result.shards_kept else ""),
    )
    summary.add_row(
        "rejected",
        f"{m.rejected.count:,}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(m.rejected.by_reason.items()))}) -> {m.rejected.path}"
            if m.rejected.count
            else ""
        ),
    )
    summary.add_row(
        "splits",
        ", ".join(f"{k} {v:,}" for k, v in m.splits.counts.items())
        + (f" ({m.splits.source})" if m.splits.source else ""),
    )
    if m.protocol is not None:
        summary.add_row(
            "query list",
            f"{m.protocol.rows:,} manipulations of {m.protocol.queries:,} queries"
            + (f", {m.protocol.rejected_queries:,} queries rejected" if m.protocol.rejected_queries else "")
            + f" ({m.protocol.source})",
        )
    summary.add_row(
        "time",
        f"{result.seconds:.1f} s ({result.rows_in / result.seconds:,.0f} images/s); "
        f"writers busy {result.writer_seconds:.1f} s of {result.stage_seconds:.1f} s",
    )
    show(console, summary, keep=2)
    attrs = Table(title="attributes")
    for column in ("attribute", "values", "unknown", "most common"):
        attrs.add_column(column)
    for a in m.attributes:
        counts = m.value_counts[a.name]
        top = sorted(zip(counts, a.values), reverse=True)[:3]
        attrs.add_row(
            a.name, str(len(a.values)), f"{m.unknown_counts[a.name]:,}", "; ".join(f"{v} ({c:,})" for c, v in top)
        )
    show(console, attrs, keep=4)


def cli(
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", callback=absolute_option, help="Catalog URL to write (path, s3://bucket/prefix, ...)."
        ),
    ],
    source: Annotated[
        Optional[str],
        typer.Option(
            "--source",
            callback=absolute_option,
            help="Source URL (source.path): a folder with the label table, CelebA's files or ADDE's split files.",
        ),
    ] = None,
    kind: Annotated[
        Optional[str], typer.Option("--kind", help="Source kind (source.kind): folder, celeba or adde.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Pack a source catalog into Parquet shards + catalog.json (rejected images in rejected.csv)."""
    cfg = resolve_config(config, set_, source=("source.path", source), kind=("source.kind", kind))
    result = pack(cfg, out)
    print_summary(result, out)


if __name__ == "__main__":
    run_app(single_command(cli))

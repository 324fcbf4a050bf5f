"""Render the synthetic garment catalog as a folder + label table that `fsnet pack` takes like any other.

Local:
    fsnet synth --n 2000 --size 64 --out ./fsnet-demo/synth
    fsnet pack --config synthetic --source ./fsnet-demo/synth --out ./fsnet-demo/catalog
    fsnet synth --n 20 --first 2000 --size 64 --out ./fsnet-demo/synth     # grow it: 20 more, rows added to labels.csv
Cluster:
    ray job submit --working-dir . -- python -m jobs.synth --n 100000 --size 96 --out s3://bucket/synth

Writes <out>/images/NNNNNN.jpg, <out>/labels.csv (image, 5 attributes, box_<attribute> columns) and
<out>/config.yaml. Every image is a pure function of (seed, index), whatever the parallelism. With ``--first F``
it renders indices F .. F+n-1 and merges their rows into an existing labels.csv (a catalog that grows).
"""

from __future__ import annotations

import io
import time
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import typer

from fsnet.catalog.synthetic import SyntheticWriter
from fsnet.config import Config, saved_config_text
from fsnet.storage import Storage, join
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

IMAGES_PER_BATCH = 256  # one PUT burst per batch; small enough that progress moves every second or so


def synth(cfg: Config, out: str, show_progress: bool = True, first: int = 0) -> float:
    """Render cfg.synthetic.n images, indices ``first`` .. ``first + n - 1``, to ``out``; returns the seconds it
    took. With ``first`` > 0 the rows of an existing labels.csv are kept (a re-rendered index replaces its row)."""
    start = time.perf_counter()
    storage = Storage(cfg.storage)
    storage.check_output_folder(out)  # before Ray: a file there would fail inside the writers, past recognition
    init_ray(cfg.ray)
    s = cfg.synthetic
    # The indices as in-memory blocks (no read tasks competing with the actors for CPUs).
    end = first + s.n
    blocks = [
        pa.table({"id": np.arange(a, min(a + IMAGES_PER_BATCH, end))}) for a in range(first, end, IMAGES_PER_BATCH)
    ]
    rows = one_block_each(blocks).map_batches(
        SyntheticWriter,
        fn_constructor_kwargs=dict(storage=storage, out_url=out, size=s.size, seed=s.seed, quality=s.jpeg_quality),
        batch_size=IMAGES_PER_BATCH,
        batch_format="numpy",
        compute=actor_pool(min(len(blocks), cluster_cpus())),
    )
    tables = []
    with bar("rendering", "images", show_progress) as progress:
        task = progress.add_task("synth", total=s.n)
        for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
            tables.append(batch)
            progress.advance(task, batch.num_rows)
    labels = pa.concat_tables(tables).to_pandas()
    table_url = join(out, "labels.csv")
    if first > 0 and storage.exists(table_url):
        old = pd.read_csv(io.BytesIO(storage.read_bytes(table_url)), dtype=str, keep_default_na=False)
        labels = pd.concat([old[~old["image"].isin(labels["image"])], labels], ignore_index=True)
    storage.write_text(table_url, labels.sort_values("image").to_csv(index=False))
    storage.write_text(join(out, "config.yaml"), saved_config_text(cfg))
    return time.perf_counter() - start


def cli(
    out: Annotated[
        str,
        typer.Option("--out", "-o", callback=absolute_option, help="Folder URL to write images/ and labels.csv to."),
    ],
    n: Annotated[Optional[int], typer.Option("--n", help="Number of images (synthetic.n).")] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="Square image size in pixels (synthetic.size).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed (synthetic.seed).")] = None,
    first: Annotated[
        int, typer.Option("--first", min=0, help="First index to render; > 0 adds rows to an existing labels.csv.")
    ] = 0,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Render the synthetic garment catalog (images + labels.csv) for `fsnet pack --config synthetic`."""
    cfg = resolve_config(
        config, set_, n=("synthetic.n", n), size=("synthetic.size", size), seed=("synthetic.seed", seed)
    )
    seconds = synth(cfg, out, first=first)
    console.print(
        f"wrote {cfg.synthetic.n:,} images of {cfg.synthetic.size} px to {out} in {seconds:.1f} s; "
        f"next: fsnet pack --config synthetic --source {out} --out <catalog>"
    )


if __name__ == "__main__":
    run_app(single_command(cli))

"""Bring an index up to date with its catalog (jobs/index.py does the work): only new or changed catalog shards are
extracted, deleted ones dropped, unchanged ones reused; nothing changed exits 0 saying so.

Local:
    fsnet reindex --catalog fsnet-demo/catalog --index fsnet-demo/index
    fsnet reindex --verify ...     # re-hash the catalog's shards first: a shard whose bytes changed stops it (re-pack)
    fsnet reindex --gate ...       # the new version evaluated first, published only if its quality holds (jobs/gate.py)
Cluster:
    fsnet submit reindex --wait -- --catalog s3://b/catalogs/shop --index s3://b/index/shop
Schedule (cron, every night at 02:00, three crontab lines; cluster/kuberay/cronjob-reindex.yaml is the Kubernetes
form):
    CATALOG=s3://b/catalogs/shop
    INDEX=s3://b/index/shop
    0 2 * * *  cd /opt/fsnet && .venv/bin/fsnet reindex --gate --catalog $CATALOG --index $INDEX >> reindex.log 2>&1
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fsnet.errors import FsnetError
from fsnet.index.manifest import read_current, read_manifest
from fsnet.storage import Storage
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.gate import quality_gate
from jobs.index import index, print_manifest
from jobs.verify import require_intact_catalog


def cli(
    catalog: Annotated[str, typer.Option("--catalog", callback=absolute_option, help="Packed catalog URL.")],
    index_url: Annotated[
        str, typer.Option("--index", callback=absolute_option, help="Index URL with a CURRENT version.")
    ],
    model: Annotated[
        Optional[str],
        typer.Option("--model", callback=absolute_option, help="Another model.pt (means a full re-index)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash the catalog's shards first; a changed one is an error.")
    ] = False,
    gate: Annotated[
        bool,
        typer.Option(
            "--gate",
            help="Evaluate the new version and publish it only when its Top-K is not worse than the live one's "
            "(gate.*); refused: exit 3, CURRENT unchanged.",
        ),
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Bring an index up to date with its catalog: extract only new or changed shards, drop deleted ones."""
    cfg = resolve_config(config, set_)
    storage = Storage(cfg.storage)
    if verify:  # a shard's fingerprint names its content: without this, changed bytes under it look unchanged
        console.print(require_intact_catalog(storage, catalog))
    current = read_current(storage, index_url)
    if current is None:
        raise FsnetError(f"{index_url}: no CURRENT index; build one with fsnet index")
    live = read_manifest(storage, index_url, current)
    checked = quality_gate(cfg, index_url, catalog) if gate else None  # jobs/gate.py
    result = index(cfg, model or live.model.url, catalog, index_url, live.split, before_publish=checked)  # type: ignore[arg-type]
    if result.manifest is not None:
        print_manifest(result.manifest)
    console.print(result.message)


if __name__ == "__main__":
    run_app(single_command(cli))

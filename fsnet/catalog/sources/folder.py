"""Folder + label table: a CSV or Parquet table with one row per image (a file name column, attribute
columns) and the image files in a folder or under an S3 prefix. fashion-product-small, Shopping100k, DARN,
iMaterialist and the synthetic catalog all come in through here."""

from __future__ import annotations

import fnmatch
import io
import posixpath

import numpy as np
import pandas as pd
import pyarrow as pa

from fsnet.catalog.schema import UNKNOWN, Attribute, AttributeSchema
from fsnet.catalog.sources.base import SourceTable, build_source_table
from fsnet.config import SourceConfig
from fsnet.errors import SourceError
from fsnet.storage import Storage, is_absolute, join

MAX_VALUES = np.iinfo(np.int16).max  # labels are int16 in the shards


def read_folder_source(cfg: SourceConfig, storage: Storage) -> SourceTable:
    assert cfg.path is not None
    table_url = join(cfg.path, cfg.table)
    frame = _read_table(table_url, storage)
    columns = list(frame.columns)

    def require(name: str, key: str) -> None:
        if name not in columns:
            raise SourceError(f"{table_url}: no column '{name}' ({key}); columns: {', '.join(columns)}")

    require(cfg.image_column, "source.image_column")
    if cfg.id_column is not None:
        require(cfg.id_column, "source.id_column")
    ignored = _match(cfg.ignore, columns, table_url, "source.ignore")
    extra = [c for c in _match(cfg.extra, columns, table_url, "source.extra") if c not in ignored]
    structural = {cfg.image_column, cfg.id_column}
    if cfg.attributes is not None:
        missing = [a for a in cfg.attributes if a not in columns]
        if missing:
            raise SourceError(
                f"{table_url}: attribute column(s) {', '.join(repr(m) for m in missing)} do not exist "
                f"(source.attributes); columns: {', '.join(columns)}"
            )
        attributes = list(cfg.attributes)
        overlap = [a for a in attributes if a in structural or a in ignored or a in extra]
        if overlap:
            raise SourceError(
                f"{table_url}: {', '.join(overlap)} cannot be an attribute and also the image/id column, ignored or "
                "extra"
            )
    else:
        attributes = [c for c in columns if c not in structural and c not in ignored and c not in extra]
    if not attributes:
        raise SourceError(
            f"{table_url}: no attribute columns left (columns: {', '.join(columns)}); check source.attributes / "
            "ignore / extra"
        )

    images = frame[cfg.image_column].astype(str).str.strip().tolist()
    if cfg.id_column is not None:
        ids = frame[cfg.id_column].astype(str).str.strip().tolist()
    else:
        ids = [posixpath.splitext(name)[0] for name in images]
    root = cfg.images if is_absolute(cfg.images) else join(cfg.path, cfg.images)
    image_urls = [join(root, name) for name in images]

    unknown = set(cfg.unknown_values)
    labels: dict[str, np.ndarray] = {}
    schema_attrs = []
    for name in attributes:
        column = frame[name]
        texts = column.where(column.notna(), "").astype(str).str.strip()  # a null (Parquet) is unknown
        known = ~texts.isin(unknown)
        values = sorted(texts[known].unique().tolist())
        if not values:
            raise SourceError(
                f"{table_url}: attribute column '{name}' has no known value (all in source.unknown_values)"
            )
        if len(values) > MAX_VALUES:
            raise SourceError(
                f"{table_url}: attribute column '{name}' has {len(values)} distinct values (at most {MAX_VALUES}); "
                "is it an id or a description? List it in source.ignore"
            )
        codes = np.full(len(texts), UNKNOWN, dtype=np.int16)
        codes[known.to_numpy()] = pd.Categorical(texts[known], categories=values).codes
        labels[name] = codes
        schema_attrs.append(Attribute(name=name, values=values))

    extras = {c: pa.array(frame[c].tolist()) for c in extra}
    return build_source_table(
        origin=table_url,
        ids=ids,
        images=images,
        image_urls=image_urls,
        labels=labels,
        schema=AttributeSchema(attributes=schema_attrs),
        extras=extras,
        description={"kind": "folder", "path": cfg.path, "table": cfg.table, "images": cfg.images, "rows": len(frame)},
    )


def _read_table(url: str, storage: Storage) -> pd.DataFrame:
    if not storage.exists(url):
        raise SourceError(f"{url}: label table not found (source.path + source.table)")
    data = storage.read_bytes(url)
    ext = posixpath.splitext(url)[1].lower()
    try:
        if ext == ".parquet":
            return pd.read_parquet(io.BytesIO(data))
        if ext in {".csv", ".tsv", ".txt"}:
            sep = "\t" if ext == ".tsv" else ","
            # Everything as text: label values are names, and "NA" must stay a name until unknown_values decides.
            return pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise SourceError(f"{url}: cannot read the label table: {err}") from None
    raise SourceError(f"{url}: label table must be .csv, .tsv or .parquet")


def _match(patterns: list[str], columns: list[str], origin: str, key: str) -> list[str]:
    """Columns named by ``patterns``; a plain name must exist, a glob ('box_*') may match nothing."""
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            out += [c for c in columns if fnmatch.fnmatchcase(c, pattern) and c not in out]
        elif pattern not in columns:
            raise SourceError(f"{origin}: no column '{pattern}' ({key}); columns: {', '.join(columns)}")
        elif pattern not in out:
            out.append(pattern)
    return out

"""What a re-pack to an existing catalog URL keeps from the catalog already there, so that a growing catalog
changes only where it grew and `fsnet reindex` (which reuses the embeddings of unchanged shards) costs what
changed:

- value codes: every value keeps the index the previous ``catalog.json`` gave it; values the source adds come
  after the old ones (in the source's order), and a value no row has any more keeps its index (count 0). A model
  trained on the previous catalog still means the same values by the same indices. The attributes themselves
  are fixed: one added or missing is an error (pack to another URL to change them).
- shard assignment (append-only): a row whose id is in a previous shard goes back to that shard, in that shard's
  order; ids no previous shard holds fill new shards of ``shard_rows`` after the last one, in table order. A
  shard that kept exactly its rows and bytes is written byte for byte as before, so its content-hash name is
  unchanged; one that lost or changed rows gets a new name.

A fresh pack (no ``catalog.json`` at the URL) is the plain rule: codes as the source gives them, shards sliced in
table order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from fsnet.catalog.manifest import CATALOG_FILE
from fsnet.catalog.reader import Catalog
from fsnet.catalog.schema import UNKNOWN, Attribute, AttributeSchema
from fsnet.catalog.sources.base import SourceProtocol, SourceTable
from fsnet.errors import CatalogError
from fsnet.storage import Storage, join

MAX_VALUES = np.iinfo(np.int16).max  # labels are int16 in the shards
_SHARD_INDEX = re.compile(r"part-(\d+)-[0-9a-f]+\.parquet$")


@dataclass
class PreviousShard:
    index: int  # the NNNNN of part-NNNNN-<fp12>.parquet: kept, so an unchanged shard keeps its name
    ids: list[str]  # in the shard's row order


def previous_catalog(storage: Storage, url: str) -> Catalog | None:
    """The catalog already at ``url`` (the one a re-pack replaces), or None for a fresh pack."""
    if not storage.exists(join(url, CATALOG_FILE)):
        return None
    return Catalog.open(url, storage)


def keep_codes(source: SourceTable, previous: AttributeSchema, catalog_url: str) -> SourceTable:
    """``source`` with its attribute order and value codes rewritten to those of ``previous`` (new values
    appended); the labels of the table and of the source's query list are remapped alike."""
    old, new = previous.names, source.schema.names
    for name in new:
        if name not in old:
            raise CatalogError(
                f"{join(catalog_url, CATALOG_FILE)}: the source has attribute '{name}', the catalog does not; "
                "a re-pack keeps the catalog's attributes (pack to a new URL to change them)"
            )
    for name in old:
        if name not in new:
            raise CatalogError(
                f"{join(catalog_url, CATALOG_FILE)}: attribute '{name}' is in the catalog but not in the source; "
                "a re-pack keeps the catalog's attributes (pack to a new URL to change them)"
            )
    attributes, columns, mappings = [], {}, {}
    for attr in previous.attributes:  # the catalog's attribute order
        values = list(attr.values)
        known = set(values)
        source_values = source.schema.attributes[source.schema.index(attr.name)].values
        values += [v for v in source_values if v not in known]
        if len(values) > MAX_VALUES:
            raise CatalogError(
                f"{catalog_url}: attribute '{attr.name}' would have {len(values)} values with the catalog's (at most "
                f"{MAX_VALUES})"
            )
        position = {v: i for i, v in enumerate(values)}
        mapping = np.array([position[v] for v in source_values], dtype=np.int16)  # source code -> catalog code
        codes = source.table[attr.name].to_numpy()
        columns[attr.name] = pa.array(
            np.where(codes >= 0, mapping[np.maximum(codes, 0)], UNKNOWN).astype(np.int16), pa.int16()
        )
        mappings[attr.name] = mapping
        attributes.append(Attribute(name=attr.name, values=values))

    table = source.table
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    protocol = source.protocol
    if protocol is not None:  # (M, A) change / target in the source's attribute order -> the catalog's
        order = [new.index(name) for name in old]

        def remap(matrix: np.ndarray) -> np.ndarray:
            out = np.full((matrix.shape[0], len(old)), UNKNOWN, dtype=np.int16)
            for a, (name, j) in enumerate(zip(old, order)):
                column = matrix[:, j]
                out[:, a] = np.where(column >= 0, mappings[name][np.maximum(column, 0)], UNKNOWN)
            return out

        protocol = SourceProtocol(
            query=protocol.query, change=remap(protocol.change), target=remap(protocol.target), source=protocol.source
        )
    return replace(source, schema=AttributeSchema(attributes=attributes), table=table, protocol=protocol)


def previous_shards(catalog: Catalog) -> list[PreviousShard]:
    """The previous catalog's shards with their ids (only the id column is read). A shard file that has gone
    missing or cannot be read holds nothing to keep: its rows count as new, so the re-pack writes them again and
    removes the damaged file."""
    shards = []
    for info in catalog.manifest.shards:
        match = _SHARD_INDEX.search(info.path)
        if match is None:
            raise CatalogError(
                f"{catalog.url}: shard {info.path} is not named part-NNNNN-<fingerprint>.parquet; pack to a new URL"
            )
        url = join(catalog.url, info.path)
        if not catalog.storage.exists(url):
            continue
        try:
            ids = catalog.shard_ids(info)
        except (OSError, pa.ArrowException):  # damaged bytes (ArrowInvalid is a ValueError, not an OSError)
            continue
        shards.append(PreviousShard(index=int(match.group(1)), ids=ids))
    return shards


def assign_shards(ids: list[str], shard_rows: int, previous: list[PreviousShard]) -> list[tuple[int, np.ndarray]]:
    """(shard index, row positions in ``ids``) per shard, in shard order: the append-only rule above. Every row
    is in exactly one shard."""
    position = {i: p for p, i in enumerate(ids)}
    groups, taken = [], np.zeros(len(ids), dtype=bool)
    for shard in sorted(previous, key=lambda s: s.index):
        rows = np.array([position[i] for i in shard.ids if i in position], dtype=np.int64)
        if len(rows):
            groups.append((shard.index, rows))
            taken[rows] = True
    fresh = np.flatnonzero(~taken)  # table order
    first = max((s.index for s in previous), default=-1) + 1
    for n, offset in enumerate(range(0, len(fresh), shard_rows)):
        groups.append((first + n, fresh[offset : offset + shard_rows]))
    if sum(len(rows) for _, rows in groups) != len(ids):  # an id in two previous shards: not a catalog fsnet wrote
        raise CatalogError(
            f"shard assignment: {sum(len(r) for _, r in groups)} rows placed for {len(ids)}; pack to a new URL"
        )
    return groups

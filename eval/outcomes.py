"""``outcomes.parquet``, beside results.json: one row per manipulation, in the evaluation's order, with its query's
id, its group (the attribute(s) changed) and each run's first-hit rank (0-based; k_max when no exact target match
is among the first k_max). A manipulation is a hit at K when its rank is below K, so every Top-K figure of every run
can be recomputed, and resampled, from it: ``fsnet compare`` and the re-index gate read it (eval/bootstrap.py).

Columns: ``query`` (string), ``group`` (string), ``rank:<method>`` (int16) per run; metadata ``k_max`` and
``evaluation`` (the results.json's ``created``: which evaluation the file belongs to)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eval.protocol import Manipulations
from fsnet.errors import FsnetError

OUTCOMES_FILE = "outcomes.parquet"
RANK = "rank:"


class OutcomesError(FsnetError):
    """An outcomes.parquet that is missing or not one."""


@dataclass(frozen=True)
class Outcomes:
    query: np.ndarray  # (M,) query ids
    group: np.ndarray  # (M,) group names
    ranks: dict[str, np.ndarray]  # method -> (M,) first-hit rank
    k_max: int
    evaluation: str | None = None  # the results.json's ``created`` it was written with

    @property
    def groups(self) -> list[str]:
        """Group names in first-seen order."""
        return list(dict.fromkeys(self.group.tolist()))

    def group_index(self, names: list[str]) -> np.ndarray:
        """(M,) each manipulation's group as an index into ``names``."""
        position = {name: i for i, name in enumerate(names)}
        return np.array([position[g] for g in self.group.tolist()], dtype=np.int64)

    def hits(self, method: str, k: int) -> np.ndarray:
        """(M,) 1.0 where ``method`` has an exact target match in its first k."""
        return (self.ranks[method] < k).astype(np.float64)


def outcomes_bytes(
    manipulations: Manipulations,
    query_ids: np.ndarray,
    ranks: dict[str, np.ndarray],
    k_max: int,
    evaluation: str | None = None,
) -> bytes:
    """The Parquet file's bytes: ``query_ids`` (Q,) the evaluation's query rows' ids; ``ranks`` method -> (M,);
    ``evaluation``: its results.json's ``created``, kept in the file's metadata."""
    columns = {
        "query": pa.array(np.asarray(query_ids)[manipulations.query].astype(str)),
        "group": pa.array(np.asarray(manipulations.groups)[manipulations.group].astype(str)).dictionary_encode(),
    }
    for method, rank in ranks.items():
        columns[RANK + method] = pa.array(np.minimum(rank, k_max).astype(np.int16))
    table = pa.table(columns).replace_schema_metadata({"k_max": str(k_max), "evaluation": evaluation or ""})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read_outcomes(data: bytes, name: str) -> Outcomes:
    """The file's bytes -> Outcomes; anything else: one OutcomesError naming ``name``."""
    try:
        table = pq.read_table(io.BytesIO(data))
        metadata = table.schema.metadata or {}
        k_max = int(metadata[b"k_max"])
        evaluation = metadata.get(b"evaluation", b"").decode() or None
        query = table["query"].to_numpy(zero_copy_only=False).astype(str)
        group = table["group"].cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    except (pa.ArrowException, KeyError, ValueError) as err:
        raise OutcomesError(f"{name}: not an fsnet {OUTCOMES_FILE} ({type(err).__name__}: {err})") from None
    ranks = {c[len(RANK) :]: table[c].to_numpy().astype(np.int64) for c in table.column_names if c.startswith(RANK)}
    return Outcomes(query, group, ranks, k_max, evaluation)

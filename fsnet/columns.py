"""Arrays in Parquet columns: an (N, ...) array as one fixed_size_list column and back, the layout every embedding
and feature file of fsnet uses (plain pyarrow reads it; no extension types); a table as one Parquet file's bytes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def fixed_list(values: np.ndarray, pa_type: pa.DataType) -> pa.FixedSizeListArray:
    """(N, ...) array -> fixed_size_list column of the trailing size."""
    flat = np.ascontiguousarray(values).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa_type), flat.shape[1])


def column_array(table: pa.Table, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A fixed_size_list column back to an (N, *shape) array (a writable copy: torch takes it as it is)."""
    column = table[name].combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=True).reshape(len(column), *shape)


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of one Parquet file (pyarrow's defaults), for Storage.write_bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()

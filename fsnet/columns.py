"""Arrays in Parquet columns: an (N, ...) array as one fixed_size_list column and back, the layout every embedding
and feature file of fsnet uses (plain pyarrow reads it; no extension types)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def fixed_list(values: np.ndarray, pa_type: pa.DataType) -> pa.FixedSizeListArray:
    """(N, ...) array -> fixed_size_list column of the trailing size."""
    flat = np.ascontiguousarray(values).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa_type), flat.shape[1])


def column_array(table: pa.Table, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A fixed_size_list column back to an (N, *shape) array (a writable copy: torch takes it as it is)."""
    column = table[name].combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=True).reshape(len(column), *shape)

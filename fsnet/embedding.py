"""Embed catalog images: the Ray Data callable class that the training job (memory block, stage-3 features) and
the index job share. ``__init__`` loads the model once; ``__call__`` takes a batch of catalog rows (encoded
``image`` bytes, ``id``, labels) and returns a pyarrow table of fixed-size list columns that plain pyarrow reads:

    id             string
    reps           fixed_size_list<float32>[A * D]   attribute representations fc10_a, attribute-major
    predicted      fixed_size_list<int16>[A]        value of highest probability per attribute
    probabilities  fixed_size_list<float32>[C]      softmax per attribute, concatenated in schema order
    boxes          fixed_size_list<float32>[A * 4]  (x0, y0, x1, y1) per attribute, as fractions of the image
    + the pass-through columns (labels, shard fingerprint, ...) unchanged

On a GPU: JPEG decode with nvJPEG inside the actor (``gpu_decode``), fp16 autocast and channels_last.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from fsnet.decode import decode_batch
from fsnet.model import load_model
from fsnet.storage import Storage


def fixed_list(values: np.ndarray, pa_type: pa.DataType) -> pa.FixedSizeListArray:
    """(N, ...) array -> fixed_size_list column of the trailing size."""
    flat = np.ascontiguousarray(values).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa_type), flat.shape[1])


def column_array(table: pa.Table, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A fixed_size_list column back to an (N, *shape) array (a writable copy: torch takes it as it is)."""
    column = table[name].combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=True).reshape(len(column), *shape)


class EmbedImages:
    def __init__(
        self,
        model_url: str,
        storage: Storage,
        image_size: int,
        passthrough: Sequence[str] = (),
        device: str = "auto",
        gpu_decode: bool = True,
    ):
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        self.model = load_model(model_url, storage).to(self.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.decode_device = self.device if self.cuda and gpu_decode else torch.device("cpu")
        self.image_size = image_size
        self.passthrough = list(passthrough)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        images = decode_batch(list(batch["image"]), self.image_size, self.decode_device).to(self.device)  # (B, 3, S, S)
        if self.cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            emb = self.model.embed(images)
        h, w = emb.map_size
        boxes = emb.boxes.float() / torch.tensor([w, h, w, h], device=emb.boxes.device, dtype=torch.float32)  # fractions
        columns = {
            "id": pa.array(batch["id"].tolist(), pa.string()),
            "reps": fixed_list(emb.reps.float().cpu().numpy(), pa.float32()),
            "predicted": fixed_list(emb.predicted.cpu().numpy().astype(np.int16), pa.int16()),
            "probabilities": fixed_list(emb.probabilities.float().cpu().numpy(), pa.float32()),
            "boxes": fixed_list(boxes.cpu().numpy(), pa.float32()),
        }
        for name in self.passthrough:
            columns[name] = pa.array(batch[name])
        return pa.table(columns)

"""A retrieval explained as one PNG (paper Fig. 6): the query with the manipulated attribute's activation map and
box (where the model has them: its ``attention`` is None without localization), then the results, exact target
matches framed green. `fsnet search --explain` and the report's examples."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch

from fsnet.catalog.schema import AttributeSchema
from fsnet.decode import decode_batch
from fsnet.model.retrieval_model import RetrievalModel


def explain_png(
    model: RetrievalModel,
    schema: AttributeSchema,
    image_size: int,
    query: bytes,
    manipulation: np.ndarray,
    results: Sequence[bytes],
    titles: Sequence[str],
    matches: Sequence[bool],
) -> bytes:
    """manipulation (A,) new value per attribute, -1 unchanged; results with their titles and match flags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    size = image_size
    attribute = int(np.flatnonzero(manipulation >= 0)[0]) if (manipulation >= 0).any() else 0
    image = decode_batch([query], size)  # (1, 3, S, S)
    columns = 1 + max(1, len(results))
    fig, axes = plt.subplots(1, columns, figsize=(2.2 * columns, 2.8))
    axes[0].imshow(image[0].permute(1, 2, 0).numpy())
    shown = model.attention(image, attribute)  # the attribute activation map and box; None without localization
    if shown is not None:
        attention, box = shown  # (H, W) conv cells
        h, w = attention.shape
        heat = torch.nn.functional.interpolate(attention[None, None], size=(size, size), mode="bilinear")[0, 0].numpy()
        axes[0].imshow(heat, cmap="jet", alpha=0.45)
        x0, y0, x1, y1 = box[0] * size / w, box[1] * size / h, box[2] * size / w, box[3] * size / h
        axes[0].add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="white", linewidth=2))
    change = ", ".join(
        f"{schema.names[a]}={schema.value_name(schema.names[a], int(v))}" for a, v in enumerate(manipulation) if v >= 0
    )
    axes[0].set_title(f"query\n{change or 'no change'}", fontsize=8)
    for ax, blob, title, match in zip(axes[1:], results, titles, matches):
        ax.imshow(decode_batch([blob], size)[0].permute(1, 2, 0).numpy())
        ax.set_title(f"{title}\n{'match' if match else ''}", fontsize=8, color="green" if match else "black")
        if match:
            ax.add_patch(patches.Rectangle((0, 0), size - 1, size - 1, fill=False, color="green", linewidth=4))
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()

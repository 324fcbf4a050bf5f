"""A small catalog shaped like ../shared/data/fashion-product-small: labels.csv with `image`, seven attribute
columns and `year`, real JPEGs in images/ (60x80 mostly, a few odd sizes), written to a local or S3 URL."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fsnet.storage import Storage, join
from tests.images import image_bytes

ATTRIBUTE_VALUES = {
    "gender": ["Men", "Women", "Unisex", "Boys", "Girls"],
    "masterCategory": ["Apparel", "Accessories", "Footwear"],
    "subCategory": ["Topwear", "Shoes", "Bags", "Bottomwear"],
    "articleType": ["Tshirts", "Shirts", "Casual Shoes", "Handbags", "Jeans", "Skirts"],
    "baseColour": ["Black", "White", "Blue", "Navy Blue", "Grey"],
    "season": ["Summer", "Fall", "Winter", "Spring"],
    "usage": ["Casual", "Sports", "Formal"],
}
COLUMNS = ["image", *ATTRIBUTE_VALUES, "year"]


def write_fashion_like(storage: Storage, url: str, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Write the folder; returns labels.csv as written (all text)."""
    rng = np.random.default_rng(seed)
    rows = []
    files = {}
    for i in range(n):
        name = f"{10001 + i}.jpg"
        width, height = (60, 80) if i % 10 else (53, 80)
        files[join(url, "images", name)] = image_bytes(width, height, "JPEG", seed=i)
        row = {"image": name, **{a: str(rng.choice(v)) for a, v in ATTRIBUTE_VALUES.items()}, "year": str(2010 + i % 8)}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for file_url, data in files.items():
        storage.write_bytes(file_url, data)
    storage.write_text(join(url, "labels.csv"), frame.to_csv(index=False))
    return frame

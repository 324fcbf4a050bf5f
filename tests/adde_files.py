"""Small files in the format of ADDE's published splits (imgs/labels/attr_num and the ref/indfull/gt query list),
with real JPEGs, and what a reader must make of them, computed here by plain loops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fsnet.storage import Storage, join
from tests.images import image_bytes

NUM_VALUES = [2, 3, 2]
TRAIN = [[i % 2, (i // 2) % 3, (i // 6) % 2] for i in range(12)]
TRAIN[5][1] = -1  # unknown values train too
TRAIN[7][2] = -1
TEST = [
    [0, 0, 0],
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [1, 2, 1],
    [-1, 0, 0],
    [1, 1, 0],
    [0, 2, 1],
    [1, 0, 1],
    [0, -1, 1],
    [0, -1, 0],
]


@dataclass
class AddeFixture:
    train_images: list[str]
    test_images: list[str]
    rows: list[tuple[int, list[int], list[int]]]  # per manipulation: (query line in imgs_test, change, target)

    def ids(self, split: str) -> list[str]:
        names = self.train_images if split == "train" else self.test_images
        return [n.rsplit(".", 1)[0] for n in names]


def onehot(codes: list[int]) -> list[int]:
    """Value indexes (-1 unknown) -> the concatenated one-hot vector (an unknown is an all-zero block)."""
    out: list[int] = []
    for value, count in zip(codes, NUM_VALUES):
        out += [1 if v == value else 0 for v in range(count)]
    return out


def manipulations() -> list[tuple[int, list[int], list[int]]]:
    """As ADDE made its query list: every (query, attribute, new value) whose target is some test image's labels,
    then one that changes two attributes at once."""
    rows = []
    for ref, labels in enumerate(TEST):
        for a, count in enumerate(NUM_VALUES):
            for v in range(count):
                if v == labels[a]:
                    continue
                target = list(labels)
                target[a] = v
                if target in TEST:
                    rows.append((ref, [v if b == a else -1 for b in range(len(NUM_VALUES))], target))
    rows.append((0, [1, -1, 1], [1, 0, 1]))
    return rows


def indicator(ref: int, change: list[int]) -> list[int]:
    """indfull: -1 on the query's old value, +1 on the new one, per changed attribute."""
    old, new = onehot(TEST[ref]), onehot([c if c >= 0 else TEST[ref][a] for a, c in enumerate(change)])
    return [n - o for n, o in zip(new, old)]


def write_adde(storage: Storage, url: str, attr_num_text: str | None = None) -> AddeFixture:
    """The files under ``url``, the images under ``url``/images/."""
    train = [f"women/t{i:02d}.jpg" for i in range(len(TRAIN))]
    test = [f"men/g{i:02d}.jpg" for i in range(len(TEST))]
    rows = manipulations()

    def lines(values: list[list[int]]) -> str:
        return "".join(" ".join(str(v) for v in row) + "\n" for row in values)

    storage.write_text(join(url, "imgs_train.txt"), "".join(f"{n}\n" for n in train))
    storage.write_text(join(url, "imgs_test.txt"), "".join(f"{n}\n" for n in test))
    storage.write_text(join(url, "labels_train.txt"), lines([onehot(c) for c in TRAIN]))
    storage.write_text(join(url, "labels_test.txt"), lines([onehot(c) for c in TEST]))
    storage.write_text(
        join(url, "attr_num.txt"), attr_num_text if attr_num_text is not None else "".join(f"{n}\n" for n in NUM_VALUES)
    )
    storage.write_text(join(url, "ref_test.txt"), "".join(f"{ref}\n" for ref, _, _ in rows))
    storage.write_text(join(url, "indfull_test.txt"), lines([indicator(ref, change) for ref, change, _ in rows]))
    storage.write_text(join(url, "gt_test.txt"), lines([onehot(target) for _, _, target in rows]))
    for seed, name in enumerate(train + test):
        storage.write_bytes(join(url, "images", name), image_bytes(48, 64, seed=seed))
    return AddeFixture(train, test, rows)


def expected_change_target(rows: list[tuple[int, list[int], list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([c for _, c, _ in rows], dtype=np.int16), np.array([t for _, _, t in rows], dtype=np.int16)

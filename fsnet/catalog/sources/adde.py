"""ADDE's published split files (Hou et al., ICCV 2021; ``splits/<dataset>/`` of amzn/fashion-attribute-
disentanglement): Shopping100k and DeepFashion exactly as ADDE trained and evaluated on them.

- ``imgs_train.txt`` / ``imgs_test.txt``: one image path per line, relative to ``source.images``. Train lines
  become the train split, test lines the gallery split; there is no query split: ADDE's queries are test images
  and stay in the gallery, as in ADDE's evaluation. The id is the path without its extension.
- ``labels_train.txt`` / ``labels_test.txt``: per image line, the concatenated one-hot labels, C = sum(attr_num)
  0/1 columns; an all-zero block is an unknown value (-1).
- ``attr_num.txt``: values per attribute (every integer of the file, one per line as published).
- ``ref_test.txt`` / ``indfull_test.txt`` / ``gt_test.txt``: the evaluation's query list, one manipulation per
  line: the query's 0-based line in imgs_test; the indicator (-1 on the query's old value, +1 on the new one; an
  attribute the query has no value for has only the +1); the target's one-hot labels. Stored in the catalog as
  its protocol (change: the +1s; target: gt), checked line by line: gt must be the query's labels changed as the
  indicator says.

The files name no attributes or values: attributes are ``source.adde.attribute_names`` (default attr0, attr1, ...),
values their index as a string. Every malformed line is one SourceError naming the file and the line (1-based).
"""

from __future__ import annotations

import posixpath

import numpy as np

from fsnet.catalog.schema import UNKNOWN, Attribute, AttributeSchema
from fsnet.catalog.sources.base import FixedSplits, SourceProtocol, SourceTable, build_source_table
from fsnet.config import SourceConfig
from fsnet.errors import SourceError
from fsnet.storage import Storage, is_absolute, join

MAX_VALUES = np.iinfo(np.int16).max  # labels are int16 in the shards
SPLIT_FILES = (("train", "imgs_train", "labels_train"), ("gallery", "imgs_test", "labels_test"))


def read_adde_source(cfg: SourceConfig, storage: Storage) -> SourceTable:
    assert cfg.path is not None
    files = cfg.adde
    protocol_keys = [k for k in ("ref", "indfull", "gt") if getattr(files, k) is not None]
    if protocol_keys and len(protocol_keys) != 3:
        raise SourceError(
            f"source.adde.ref, indfull and gt go together: set all three or none (set: {', '.join(protocol_keys)})"
        )

    def read(key: str) -> tuple[str, str]:
        name = getattr(files, key)
        url = name if is_absolute(name) else join(cfg.path, name)
        if not storage.exists(url):
            raise SourceError(f"{url}: ADDE file not found (source.path + source.adde.{key})")
        return url, storage.read_text(url)

    attr_url, attr_text = read("attr_num")
    num_values = _attr_num(attr_text, attr_url)
    names = _attribute_names(files.attribute_names, len(num_values), attr_url)
    schema = AttributeSchema(
        attributes=[Attribute(name=n, values=[str(v) for v in range(k)]) for n, k in zip(names, num_values)]
    )
    width = sum(num_values)

    images: list[str] = []
    ids: list[str] = []
    splits: list[str] = []
    codes: list[np.ndarray] = []
    where: dict[str, tuple[str, int]] = {}  # id -> (file, line) where it was first listed
    test_onehot, test_ids = np.zeros((0, width), np.int64), []
    for split, imgs_key, labels_key in SPLIT_FILES:
        imgs_url, imgs_text = read(imgs_key)
        names_here = _image_lines(imgs_text, imgs_url)
        labels_url, labels_text = read(labels_key)
        onehot = _int_rows(labels_text, labels_url, width, f"sum(attr_num) = {width} one-hot columns")
        if len(onehot) != len(names_here):
            raise SourceError(
                f"{labels_url}: {len(onehot)} label lines, but {imgs_url} lists {len(names_here)} images; line i of "
                "one labels line i of the other"
            )
        _check_values(onehot, (0, 1), labels_url, "labels are one-hot: 0 or 1")
        codes.append(_decode_onehot(onehot, num_values, names, labels_url))
        ids_here = [posixpath.splitext(name)[0] for name in names_here]
        for number, (name, image_id) in enumerate(zip(names_here, ids_here), start=1):
            if image_id in where:
                first_url, first_line = where[image_id]
                raise SourceError(
                    f"{imgs_url}: line {number}: {name!r} (id {image_id!r}) is also {first_url} line {first_line}; "
                    "each image is listed once, in train or in test"
                )
            where[image_id] = (imgs_url, number)
        images += names_here
        ids += ids_here
        splits += [split] * len(names_here)
        if split == "gallery":
            test_onehot, test_ids = onehot, ids_here

    labels = np.concatenate(codes, axis=0)  # (N, A)
    root = cfg.images if is_absolute(cfg.images) else join(cfg.path, cfg.images)
    split_source = f"adde: {files.imgs_train} -> train, {files.imgs_test} -> gallery"
    description = {
        "kind": "adde",
        "path": cfg.path,
        "images": cfg.images,
        "rows": len(images),
        "files": {
            k: getattr(files, k)
            for k in ("imgs_train", "imgs_test", "labels_train", "labels_test", "attr_num", "ref", "indfull", "gt")
        },
        "train": splits.count("train"),
        "test": splits.count("gallery"),
    }
    protocol = None
    if protocol_keys:
        ref_url, ref_text = read("ref")
        ind_url, ind_text = read("indfull")
        gt_url, gt_text = read("gt")
        protocol = _read_protocol(
            ref_url,
            ref_text,
            ind_url,
            ind_text,
            gt_url,
            gt_text,
            test_onehot,
            test_ids,
            num_values,
            names,
            source=f"adde: {files.ref} (queries), {files.indfull} (changes), {files.gt} (targets)",
        )
        description["protocol_rows"] = len(protocol.query)
    table = build_source_table(
        origin=join(cfg.path, files.imgs_train),
        ids=ids,
        images=images,
        image_urls=[join(root, name) for name in images],
        labels={n: labels[:, a] for a, n in enumerate(names)},
        schema=schema,
        description=description,
    )
    table.splits = FixedSplits(split=np.asarray(splits, dtype=object), source=split_source)
    table.protocol = protocol
    return table


def _attr_num(text: str, origin: str) -> list[int]:
    """Every integer of the file (one per line as published; one line of several is read the same)."""
    parts = text.split()
    try:
        counts = [int(p) for p in parts]
    except ValueError:
        raise SourceError(
            f"{origin}: expected the number of values of each attribute as integers, got {text[:60]!r}"
        ) from None
    if not counts:
        raise SourceError(f"{origin}: no attribute value counts")
    bad = [c for c in counts if not 1 <= c <= MAX_VALUES]
    if bad:
        raise SourceError(f"{origin}: value counts must be between 1 and {MAX_VALUES}, got {bad[0]}")
    return counts


def _attribute_names(given: list[str] | None, count: int, origin: str) -> list[str]:
    if given is None:
        return [f"attr{a}" for a in range(count)]
    if len(given) != count or len(set(given)) != count or not all(given):
        raise SourceError(
            f"source.adde.attribute_names: {len(given)} name(s) {given}, but {origin} gives {count} attributes; "
            "one distinct, non-empty name per attribute, in file order"
        )
    return list(given)


def _lines(text: str) -> list[str]:
    """The file's lines without the blank ones at its end (line i is still line i + 1 of the file)."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _image_lines(text: str, origin: str) -> list[str]:
    names = [line.strip() for line in _lines(text)]
    empty = [n for n, name in enumerate(names, start=1) if not name]
    if empty:
        raise SourceError(f"{origin}: line {empty[0]} is empty; one image path per line")
    if not names:
        raise SourceError(f"{origin}: no image lines")
    return names


def _int_rows(text: str, origin: str, width: int, what: str) -> np.ndarray:
    """(lines, width) int64 of whitespace-separated integers, one row per line; the first bad line is named."""
    lines = _lines(text)
    if not lines:
        return np.zeros((0, width), np.int64)
    try:
        if not any(not line.strip() for line in lines):  # np.loadtxt skips blank lines: line numbers would shift
            rows = np.loadtxt(lines, dtype=np.int64, ndmin=2, comments=None)
            if rows.shape[1] == width:
                return rows
    except ValueError:
        pass
    for number, line in enumerate(lines, start=1):  # slow path: find the first bad line
        parts = line.split()
        if not parts:
            raise SourceError(f"{origin}: line {number} is empty")
        if len(parts) != width:
            raise SourceError(f"{origin}: line {number} has {len(parts)} values, expected {width} ({what})")
        for part in parts:
            try:
                int(part)
            except ValueError:
                raise SourceError(f"{origin}: line {number}: {part!r} is not an integer") from None
    raise SourceError(f"{origin}: not readable as whitespace-separated integers")


def _check_values(rows: np.ndarray, allowed: tuple[int, ...], origin: str, what: str) -> None:
    bad = np.argwhere(~np.isin(rows, allowed))
    if len(bad):
        row, col = bad[0]
        raise SourceError(f"{origin}: line {row + 1}: {rows[row, col]} in column {col + 1}; {what}")


def _blocks(num_values: list[int]) -> list[slice]:
    """Each attribute's columns in the concatenated one-hot vector."""
    ends = np.cumsum(num_values)
    return [slice(int(end - k), int(end)) for end, k in zip(ends, num_values)]


def _decode_onehot(onehot: np.ndarray, num_values: list[int], names: list[str], origin: str) -> np.ndarray:
    """(N, C) 0/1 -> (N, A) int16 value indexes, -1 for an all-zero block; two 1s in a block are an error."""
    codes = np.full((len(onehot), len(num_values)), UNKNOWN, dtype=np.int16)
    for a, block in enumerate(_blocks(num_values)):
        part = onehot[:, block]  # (N, values of a)
        count = part.sum(axis=1)
        several = np.flatnonzero(count > 1)
        if len(several):
            r = several[0]
            raise SourceError(
                f"{origin}: line {r + 1}: attribute {names[a]} (columns {block.start + 1}-{block.stop}) has "
                f"{count[r]} ones; "
                "at most one value per attribute"
            )
        codes[:, a] = np.where(count == 1, part.argmax(axis=1), UNKNOWN)
    return codes


def _read_protocol(
    ref_url: str,
    ref_text: str,
    ind_url: str,
    ind_text: str,
    gt_url: str,
    gt_text: str,
    test_onehot: np.ndarray,
    test_ids: list[str],
    num_values: list[int],
    names: list[str],
    source: str,
) -> SourceProtocol:
    width = sum(num_values)
    ref = _int_rows(ref_text, ref_url, 1, "the query's 0-based line in imgs_test")[:, 0]
    ind = _int_rows(ind_text, ind_url, width, f"sum(attr_num) = {width} indicator columns")
    gt = _int_rows(gt_text, gt_url, width, f"sum(attr_num) = {width} one-hot columns")
    if not len(ref) == len(ind) == len(gt):
        raise SourceError(
            f"{ref_url}, {ind_url}, {gt_url}: {len(ref)}, {len(ind)} and {len(gt)} lines; line i of each describes "
            "manipulation i"
        )
    if not len(ref):
        raise SourceError(
            f"{ref_url}: no queries (set source.adde.ref, indfull and gt to null to pack without a query list)"
        )
    outside = np.flatnonzero((ref < 0) | (ref >= len(test_ids)))
    if len(outside):
        r = outside[0]
        raise SourceError(
            f"{ref_url}: line {r + 1}: query index {ref[r]} is outside imgs_test's {len(test_ids)} lines (0-based)"
        )
    _check_values(ind, (-1, 0, 1), ind_url, "indicators are -1 (the old value), 0 or 1 (the new value)")
    _check_values(gt, (0, 1), gt_url, "target labels are one-hot: 0 or 1")
    target = _decode_onehot(gt, num_values, names, gt_url)
    no_change = np.flatnonzero(~(ind == 1).any(axis=1))
    if len(no_change):
        raise SourceError(f"{ind_url}: line {no_change[0] + 1}: no 1, so no attribute gets a new value")

    query = test_onehot[ref]  # (M, C) the queries' one-hot labels
    change = np.full((len(ref), len(num_values)), UNKNOWN, dtype=np.int16)
    for a, block in enumerate(_blocks(num_values)):
        d, q = ind[:, block], query[:, block]  # (M, values of a)
        plus, minus = (d == 1).sum(axis=1), (d == -1).sum(axis=1)
        checks = [  # (M,) bad rows, why; the first that fails is reported
            ((plus > 1) | (minus > 1), "{plus} ones and {minus} minus ones; at most one new and one old value"),
            (
                (minus == 1) & (plus == 0),
                "a -1 without a 1: a manipulation gives a new value, it does not only remove one",
            ),
            (((q + d) < 0).any(axis=1), "the -1 is not on the query's value"),
            (((q + d) > 1).any(axis=1), "the 1 is on the value the query already has"),
            ((q + d).sum(axis=1) > 1, "a new value without a -1 on the query's old one"),
        ]
        for bad, why in checks:
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                old = f"value {q[r].argmax()}" if q[r].any() else "no value"
                raise SourceError(
                    f"{ind_url}: line {r + 1}: attribute {names[a]}: {why.format(plus=plus[r], minus=minus[r])} "
                    f"(the query, imgs_test line {ref[r] + 1}, has {old})"
                )
        change[:, a] = np.where(plus == 1, d.argmax(axis=1), UNKNOWN)

    differ = np.flatnonzero((query + ind != gt).any(axis=1))
    if len(differ):
        r = differ[0]
        a = next(
            a for a, block in enumerate(_blocks(num_values)) if (query[r, block] + ind[r, block] != gt[r, block]).any()
        )
        expected = _decode_onehot((query[r] + ind[r])[None], num_values, names, ind_url)[0, a]
        raise SourceError(
            f"{gt_url}: line {r + 1}: the target is not the query (imgs_test line {ref[r] + 1}) changed as {ind_url} "
            f"line {r + 1} says: "
            f"attribute {names[a]} should be {'unknown' if expected < 0 else expected}, the line has "
            f"{'unknown' if target[r, a] < 0 else target[r, a]}"
        )
    return SourceProtocol(
        query=np.asarray(test_ids, dtype=object)[ref].astype(str), change=change, target=target, source=source
    )

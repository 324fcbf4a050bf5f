"""ADDE's split files as a source: small files in the published format, on a local folder and on S3 (moto)."""

import numpy as np
import pytest

from fsnet.catalog.sources import read_source
from fsnet.config import load_config
from fsnet.errors import SourceError
from fsnet.storage import Storage, join
from tests.adde_files import NUM_VALUES, TEST, TRAIN, expected_change_target, write_adde


def read(url, *sets):
    cfg = load_config([], [f"source.path={url}", "source.kind=adde", *sets])
    return read_source(cfg.source, Storage(cfg.storage))


def test_labels_splits_and_query_list(location):
    storage = Storage(load_config([], location.sets).storage)
    url = location.url("adde")
    files = write_adde(storage, url)
    src = read(url, *location.sets)
    t = src.table

    assert src.schema.names == ["attr0", "attr1", "attr2"] and src.schema.num_values == NUM_VALUES
    assert src.schema.attributes[1].values == ["0", "1", "2"]
    assert t["id"].to_pylist() == files.ids("train") + files.ids("test")
    assert t["image"].to_pylist() == files.train_images + files.test_images
    assert t["image_url"][0].as_py() == join(url, "images", "women/t00.jpg")
    labels = np.stack([t[a].to_numpy() for a in src.schema.names], axis=1)
    np.testing.assert_array_equal(labels, np.array(TRAIN + TEST))  # all-zero blocks are -1
    assert src.splits.split.tolist() == ["train"] * len(TRAIN) + ["gallery"] * len(TEST)  # no query split
    assert src.splits.source == "adde: imgs_train.txt -> train, imgs_test.txt -> gallery"

    change, target = expected_change_target(files.rows)
    assert src.protocol.query.tolist() == [files.ids("test")[ref] for ref, _, _ in files.rows]
    np.testing.assert_array_equal(src.protocol.change, change)
    np.testing.assert_array_equal(src.protocol.target, target)
    assert src.description["protocol_rows"] == len(files.rows) and src.description["test"] == len(TEST)


def test_unknown_old_value_has_only_a_new_one(tmp_path):
    files = write_adde(Storage(load_config().storage), str(tmp_path))
    src = read(str(tmp_path))
    rows = [i for i, (ref, change, _) in enumerate(files.rows) if TEST[ref][0] < 0]  # g05: attr0 unknown
    assert rows and all(src.protocol.change[i][0] >= 0 for i in rows)
    assert (src.protocol.target == -1).any()  # g09 -> g10 keeps attr1 unknown


def test_attr_num_on_one_line_and_attribute_names(tmp_path):
    write_adde(Storage(load_config().storage), str(tmp_path), attr_num_text="2 3\t2\n\n")
    src = read(str(tmp_path), "source.adde.attribute_names=[category, color, sleeve]")
    assert src.schema.names == ["category", "color", "sleeve"] and src.schema.num_values == NUM_VALUES
    with pytest.raises(SourceError, match=r"attribute_names: 2 name\(s\).*gives 3 attributes"):
        read(str(tmp_path), "source.adde.attribute_names=[a, b]")


def test_without_a_query_list(tmp_path):
    write_adde(Storage(load_config().storage), str(tmp_path))
    src = read(str(tmp_path), "source.adde.ref=null", "source.adde.indfull=null", "source.adde.gt=null")
    assert src.protocol is None and len(src) == len(TRAIN) + len(TEST)
    with pytest.raises(SourceError, match="go together"):
        read(str(tmp_path), "source.adde.ref=null")


def replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def edit(name, fn):
    return lambda root: (root / name).write_text(fn((root / name).read_text()))


@pytest.mark.parametrize(
    "mutate, file, message",
    [
        (
            lambda r: replace_line(r / "labels_train.txt", 3, "1 0 1 0 0 1"),
            "labels_train.txt",
            r"line 3 has 6 values, expected 7",
        ),
        (
            lambda r: replace_line(r / "labels_test.txt", 2, "0 1 1 1 0 1 0"),
            "labels_test.txt",
            r"line 2: attribute attr1 \(columns 3-5\) has 2 ones",
        ),
        (
            lambda r: replace_line(r / "labels_test.txt", 4, "1 0 0 2 0 1 0"),
            "labels_test.txt",
            r"line 4: 2 in column 4; labels are one-hot",
        ),
        (
            lambda r: replace_line(r / "labels_train.txt", 5, "1 0 x 0 0 1 0"),
            "labels_train.txt",
            r"line 5: 'x' is not an integer",
        ),
        (lambda r: replace_line(r / "labels_train.txt", 6, ""), "labels_train.txt", r"line 6 is empty"),
        (
            edit("labels_test.txt", lambda t: t + "1 0 1 0 0 1 0\n"),
            "labels_test.txt",
            r"12 label lines, but .*imgs_test.txt lists 11 images",
        ),
        (
            edit("imgs_test.txt", lambda t: t.replace("men/g03.jpg", "women/t07.png")),
            "imgs_test.txt",
            r"imgs_test.txt: line 4: 'women/t07.png' \(id 'women/t07'\) is also .*imgs_train.txt line 8",
        ),
        (
            edit("imgs_train.txt", lambda t: t.replace("women/t09.jpg", "women/t02.jpg")),
            "imgs_train.txt",
            r"line 10: .* is also .*imgs_train.txt line 3",
        ),
        (
            lambda r: replace_line(r / "ref_test.txt", 3, "11"),
            "ref_test.txt",
            r"line 3: query index 11 is outside imgs_test's 11 lines",
        ),
        (edit("ref_test.txt", lambda t: t + "0\n"), "ref_test.txt", r"30, 29 and 29 lines"),
        (
            lambda r: replace_line(r / "indfull_test.txt", 2, "0 0 -1 1 0 0 2"),
            "indfull_test.txt",
            r"line 2: 2 in column 7; indicators are -1",
        ),
        (
            lambda r: replace_line(r / "indfull_test.txt", 2, "0 0 -1 1 1 0 0"),
            "indfull_test.txt",
            r"line 2: attribute attr1: 2 ones and 1 minus ones",
        ),
        (
            lambda r: replace_line(r / "indfull_test.txt", 1, "0 0 0 0 0 0 0"),
            "indfull_test.txt",
            r"line 1: no 1, so no attribute gets a new value",
        ),
        (lambda r: replace_line(r / "indfull_test.txt", 1, "-1 0 0 0 0 0 0"), "indfull_test.txt", r"line 1: no 1"),
        (
            lambda r: replace_line(r / "indfull_test.txt", 1, "-1 1 -1 0 0 0 0"),
            "indfull_test.txt",
            r"line 1: attribute attr1: a -1 without a 1",
        ),
        (
            lambda r: replace_line(r / "indfull_test.txt", 1, "1 -1 0 0 0 0 0"),
            "indfull_test.txt",
            r"line 1: attribute attr0: the -1 is not on the query's value .*has value 0",
        ),
        (
            lambda r: replace_line(r / "indfull_test.txt", 1, "0 1 0 0 0 0 0"),
            "indfull_test.txt",
            r"line 1: attribute attr0: a new value without a -1",
        ),
        (
            lambda r: replace_line(r / "gt_test.txt", 1, "1 0 1 0 0 1 0"),
            "gt_test.txt",
            r"line 1: the target is not the query \(imgs_test line 1\) changed as .*indfull_test.txt line 1 says: "
            r"attribute attr0 should be 1, the line has 0",
        ),
        (
            lambda r: replace_line(r / "gt_test.txt", 2, "1 1 1 0 0 1 0"),
            "gt_test.txt",
            r"line 2: attribute attr0 \(columns 1-2\) has 2 ones",
        ),
        (lambda r: (r / "attr_num.txt").write_text("2\nthree\n2\n"), "attr_num.txt", r"as integers"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, mutate, file, message):
    write_adde(Storage(load_config().storage), str(tmp_path))
    mutate(tmp_path)
    with pytest.raises(SourceError, match=message) as err:
        read(str(tmp_path))
    assert file in str(err.value)


def test_missing_file_names_the_key(tmp_path):
    write_adde(Storage(load_config().storage), str(tmp_path))
    (tmp_path / "gt_test.txt").unlink()
    with pytest.raises(SourceError, match=r"gt_test.txt: ADDE file not found \(source.path \+ source.adde.gt\)"):
        read(str(tmp_path))

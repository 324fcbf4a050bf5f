"""CelebA grouping on a small file in the exact format of list_attr_celeba.txt."""

import numpy as np
import pytest

from fsnet.catalog.sources import read_source
from fsnet.catalog.sources.celeba import celeba_schema
from fsnet.config import load_config
from fsnet.errors import SourceError
from fsnet.storage import Storage

NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male "
    "Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def row(**positive: int) -> list[int]:
    return [1 if positive.get(n) else -1 for n in NAMES]


ROWS = {
    # blond, no beard, wavy, smiling, glasses, female, hat, young
    "000001.jpg": row(Blond_Hair=1, No_Beard=1, Wavy_Hair=1, Smiling=1, Eyeglasses=1, Wearing_Hat=1, Young=1),
    # black, goatee, straight, male, old
    "000002.jpg": row(Black_Hair=1, Goatee=1, Straight_Hair=1, Male=1),
    # conflicts: two hair colours, goatee + mustache; no hair type at all; bald male
    "000003.jpg": row(Black_Hair=1, Brown_Hair=1, Goatee=1, Mustache=1, Male=1, Young=1),
    "000004.jpg": row(Gray_Hair=1, Sideburns=1, Bald=1, Male=1),
}


def write_celeba(tmp_path, rows=ROWS, partition=True, count=None):
    lines = [str(count if count is not None else len(rows)), " ".join(NAMES)]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in values) for name, values in rows.items()]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        (tmp_path / "list_eval_partition.txt").write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(rows)))
    return str(tmp_path)


def read(url):
    cfg = load_config(["celeba"], [f"source.path={url}"])
    return read_source(cfg.source, Storage(cfg.storage))


def test_schema_is_the_papers_8_attributes_21_values():
    schema = celeba_schema()
    assert schema.names == ["hair_color", "beard", "hair_type", "smiling", "eyeglasses", "gender", "hat", "age"]
    assert sum(schema.num_values) == 21


def test_grouping(tmp_path):
    src = read(write_celeba(tmp_path))
    s, t = src.schema, src.table

    def names(i):
        return {a: s.value_name(a, t[a][i].as_py()) for a in s.names}

    assert names(0) == {
        "hair_color": "blond",
        "beard": "none",
        "hair_type": "wavy",
        "smiling": "yes",
        "eyeglasses": "yes",
        "gender": "female",
        "hat": "yes",
        "age": "young",
    }
    assert names(1) == {
        "hair_color": "black",
        "beard": "goatee",
        "hair_type": "straight",
        "smiling": "no",
        "eyeglasses": "no",
        "gender": "male",
        "hat": "no",
        "age": "old",
    }
    third = names(2)
    assert (
        third["hair_color"] is None and third["beard"] is None and third["hair_type"] is None
    )  # conflict, conflict, none
    assert names(3)["hair_type"] == "bald" and names(3)["beard"] == "sideburns" and names(3)["hair_color"] == "gray"
    groups = src.description["groups"]
    assert groups["hair_color"] == {"none": 0, "conflict": 1}
    assert groups["beard"] == {"none": 0, "conflict": 1}
    assert groups["hair_type"] == {"none": 1, "conflict": 0}
    assert t["id"].to_pylist() == ["000001", "000002", "000003", "000004"]
    assert t["partition"].to_pylist() == [0, 1, 2, 0]
    assert t["image_url"][0].as_py().endswith("img_align_celeba/000001.jpg")


def test_partition_file_is_optional(tmp_path):
    src = read(write_celeba(tmp_path, partition=False))
    assert "partition" not in src.table.column_names
    assert src.description["partition_file"].startswith("not found")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda p: p.write_text(p.read_text().replace("000002.jpg -1", "000002.jpg  0", 1)),
            r"line 4: values must be 1 or -1",
        ),
        (lambda p: p.write_text(p.read_text().replace("Young", "")), r"line 3 has 40 values, the header names 39"),
        (lambda p: p.write_text("7\n" + p.read_text().split("\n", 1)[1]), r"declares 7 images but 4 rows follow"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, mutate, message):
    url = write_celeba(tmp_path)
    mutate(tmp_path / "list_attr_celeba.txt")
    with pytest.raises(SourceError, match=message) as err:
        read(url)
    assert "list_attr_celeba.txt" in str(err.value)


def test_missing_attribute_file(tmp_path):
    with pytest.raises(SourceError, match="CelebA attribute file not found"):
        read(str(tmp_path))


def test_random_rows_against_a_plain_loop(tmp_path):
    rng = np.random.default_rng(0)
    rows = {f"{i:06d}.jpg": list(rng.choice([-1, 1], size=len(NAMES), p=[0.8, 0.2])) for i in range(1, 60)}
    src = read(write_celeba(tmp_path, rows=rows, partition=False))
    schema = celeba_schema()
    groups = {
        "hair_color": ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"],
        "beard": ["Goatee", "Mustache", "Sideburns", "No_Beard"],
        "hair_type": ["Bald", "Straight_Hair", "Wavy_Hair"],
    }
    binary = {"smiling": "Smiling", "eyeglasses": "Eyeglasses", "gender": "Male", "hat": "Wearing_Hat", "age": "Young"}
    for i, values in enumerate(rows.values()):
        v = dict(zip(NAMES, values))
        for attr, members in groups.items():
            on = [k for k, m in enumerate(members) if v[m] == 1]
            assert src.table[attr][i].as_py() == (on[0] if len(on) == 1 else -1)
        for attr, member in binary.items():
            assert src.table[attr][i].as_py() == (1 if v[member] == 1 else 0)
    assert schema.num_values == [4, 4, 3, 2, 2, 2, 2, 2]

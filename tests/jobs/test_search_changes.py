"""`fsnet search --change`: each attribute changes to one value; the same attribute twice with two values is one
line, never the last silently (no Ray, no index: the parsing alone)."""

import pytest

from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.errors import FsnetError
from fsnet.schema_match import SchemaMatch
from jobs.search import parse_manipulations

SCHEMA = AttributeSchema(
    attributes=[Attribute(name="category", values=["coat", "dress"]), Attribute(name="color", values=["black", "red"])]
)
MATCH = SchemaMatch.of(SCHEMA, SCHEMA, "model.pt", "catalog")


def test_changes_become_target_codes_and_a_repeat_of_the_same_value_is_harmless():
    assert parse_manipulations(MATCH, ["color=red"]).tolist() == [-1, 1]
    assert parse_manipulations(MATCH, ["category=dress", "color=black", "color=black"]).tolist() == [1, 0]


def test_one_attribute_to_two_values_is_refused_naming_both():
    with pytest.raises(FsnetError, match=r"^--change category=coat and --change category=dress: an attribute changes"):
        parse_manipulations(MATCH, ["category=coat", "color=red", "category=dress"])

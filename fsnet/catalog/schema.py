"""The attribute schema: ordered attributes, each with ordered value names. A label is a value index
(int16 in the shards); -1 means unknown."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fsnet.errors import CatalogError

UNKNOWN = -1


class Attribute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    values: list[str] = Field(min_length=1)


class AttributeSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: list[Attribute] = Field(min_length=1)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def num_values(self) -> list[int]:
        """Values per attribute, in attribute order."""
        return [len(a.values) for a in self.attributes]

    @property
    def offsets(self) -> list[int]:
        """Where each attribute's values start when all values are laid out in one row (memory rows, concatenated
        probabilities, one-hot indicators): [0, V_1, V_1 + V_2, ...]."""
        return value_offsets(self.num_values)

    def index(self, name: str) -> int:
        for i, a in enumerate(self.attributes):
            if a.name == name:
                return i
        raise CatalogError(f"unknown attribute '{name}' (attributes: {', '.join(self.names)})")

    def value_index(self, attribute: str, value: str) -> int:
        values = self.attributes[self.index(attribute)].values
        try:
            return values.index(value)
        except ValueError:
            raise CatalogError(
                f"unknown value '{value}' of attribute '{attribute}' (values: {', '.join(values)})"
            ) from None

    def value_name(self, attribute: str, index: int) -> str | None:
        """The value's name, or None for unknown (-1)."""
        if index == UNKNOWN:
            return None
        return self.attributes[self.index(attribute)].values[index]


def value_offsets(num_values: list[int]) -> list[int]:
    """[0, V_1, V_1 + V_2, ...]: the first position of each attribute's values in the C = sum V_a concatenated ones."""
    return [sum(num_values[:a]) for a in range(len(num_values))]

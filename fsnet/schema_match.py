"""The schema a model was trained on against a catalog's, matched by name (index, reindex, evaluate and search
all go through here).

Catalogs change under a trained model: a re-pack adds a value (a new colour this season), and a catalog packed
with sorted values gives every value after the new one another code. A model's outputs (predictions, class
probabilities, memory-block rows) are in the codes of the schema it was trained on; a catalog's labels are in
the catalog's codes. So labels are translated to the model's codes by value name before anything compares them
with what the model produces, and the jobs work in the model's code space:

- identical schemas: the translation is the identity;
- values the catalog has and the model does not: their labels become ``NOT_IN_MODEL`` (-2). The model cannot
  predict them nor manipulate towards them, so they are never a manipulation target; a gallery image with one
  never matches a target; one line names them (``note``);
- values the model has and the catalog does not (a value no longer packed): harmless, no label uses them;
- an attribute on one side only: ``SchemaMismatch``, one line naming it, the model and the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fsnet.catalog.schema import UNKNOWN, AttributeSchema
from fsnet.errors import CatalogError

NOT_IN_MODEL = -2  # a known label whose value is new since the model was trained (as UNKNOWN, never a target)


class SchemaMismatch(CatalogError):
    """The model and the catalog do not have the same attributes."""


class ValueNotInModel(CatalogError):
    """A value the catalog has was asked for, but the model was trained before it existed."""


@dataclass(frozen=True)
class SchemaMatch:
    model: AttributeSchema
    catalog: AttributeSchema
    model_url: str
    catalog_url: str
    # per attribute name: (catalog values,) int64, the model's code of each catalog code (NOT_IN_MODEL if none)
    codes: dict[str, np.ndarray] = field(repr=False)

    @classmethod
    def of(cls, model: AttributeSchema, catalog: AttributeSchema, model_url: str, catalog_url: str) -> SchemaMatch:
        only_model = [n for n in model.names if n not in catalog.names]
        only_catalog = [n for n in catalog.names if n not in model.names]
        if only_model or only_catalog:
            what = "; ".join(
                [f"attribute '{n}' is in the model, not in the catalog" for n in only_model]
                + [f"attribute '{n}' is in the catalog, not in the model" for n in only_catalog]
            )
            raise SchemaMismatch(f"{what} (model {model_url}, catalog {catalog_url}); train a model on this catalog")
        codes = {}
        for attribute in model.attributes:
            known = {v: i for i, v in enumerate(attribute.values)}
            catalog_values = catalog.attributes[catalog.index(attribute.name)].values
            codes[attribute.name] = np.array([known.get(v, NOT_IN_MODEL) for v in catalog_values], dtype=np.int64)
        return cls(model, catalog, model_url, catalog_url, codes)

    @property
    def identical(self) -> bool:
        return self.model == self.catalog

    @property
    def names(self) -> list[str]:
        """Attributes in the model's order: the order of reps, predictions and every (N, A) array the jobs build."""
        return self.model.names

    @property
    def catalog_columns(self) -> list[int]:
        """For each model attribute, its column in the catalog's attribute order."""
        return [self.catalog.index(n) for n in self.model.names]

    @property
    def not_in_model(self) -> dict[str, list[str]]:
        """Catalog values the model does not know, per attribute (attributes without any left out)."""
        out = {}
        for name, codes in self.codes.items():
            values = self.catalog.attributes[self.catalog.index(name)].values
            missing = [v for v, c in zip(values, codes) if c == NOT_IN_MODEL]
            if missing:
                out[name] = missing
        return out

    @property
    def recoded(self) -> list[str]:
        """Attributes whose shared values have other codes in the catalog than in the model (a re-pack that sorted
        a new value in between, or another value order)."""
        return [n for n, codes in self.codes.items() if (codes != np.arange(len(codes)))[codes != NOT_IN_MODEL].any()]

    def note(self) -> str | None:
        """One line saying how the schemas differ (None when identical); jobs print it once."""
        if self.identical:
            return None
        parts = []
        unknown = self.not_in_model
        if unknown:
            listed = "; ".join(f"{a}: {', '.join(v)}" for a, v in unknown.items())
            parts.append(f"values new since the model was trained, not predictable (never a target): {listed}")
        if self.recoded:
            parts.append(f"other codes for {', '.join(self.recoded)}, mapped by value name")
        if not parts:  # only the attribute order or values the catalog no longer has
            parts.append("mapped by name")
        return f"schema: catalog {self.catalog_url} differs from model {self.model_url}: " + "; ".join(parts)

    def to_model(self, labels: np.ndarray) -> np.ndarray:
        """(N, A) catalog codes, columns in the model's attribute order -> (N, A) int64 model codes; UNKNOWN stays
        UNKNOWN, a value the model does not know becomes NOT_IN_MODEL."""
        labels = np.asarray(labels, dtype=np.int64).reshape(len(labels), len(self.names))
        out = np.full(labels.shape, UNKNOWN, dtype=np.int64)
        for a, name in enumerate(self.names):
            known = labels[:, a] >= 0
            out[known, a] = self.codes[name][labels[known, a]]
        return out

    def column_to_model(self, name: str, codes: np.ndarray) -> np.ndarray:
        """One attribute's catalog codes (N,) -> model codes (N,)."""
        codes = np.asarray(codes, dtype=np.int64)
        return np.where(codes >= 0, self.codes[name][np.clip(codes, 0, None)], UNKNOWN)

    def catalog_order_to_model(self, labels: np.ndarray) -> np.ndarray:
        """(N, A) catalog codes in the catalog's attribute order (a stored query list) -> (N, A) model codes."""
        labels = np.asarray(labels, dtype=np.int64).reshape(len(labels), len(self.names))
        return self.to_model(labels[:, self.catalog_columns])

    def value_code(self, attribute: str, value: str) -> int:
        """A value name -> the model's code; a value only the catalog has is a one-line error saying so."""
        index = self.model.index(attribute)  # an unknown attribute lists the model's (= the catalog's) attributes
        values = self.model.attributes[index].values
        if value in values:
            return values.index(value)
        if value in self.catalog.attributes[self.catalog.index(attribute)].values:
            raise ValueNotInModel(
                f"{attribute}={value}: the model {self.model_url} was trained before '{value}' existed in the catalog "
                f"{self.catalog_url} (its {attribute} values: {', '.join(values)}); train on the current catalog to "
                "use it"
            )
        return self.model.value_index(attribute, value)  # neither knows it: the error lists the values

    def value_name(self, attribute: str, code: int) -> str | None:
        """A model code's name; None for UNKNOWN and NOT_IN_MODEL."""
        return self.model.value_name(attribute, code) if code >= 0 else None

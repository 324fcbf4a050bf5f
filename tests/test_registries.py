"""Every registry is the one list of its names, and the config accepts exactly those: a name added to one and not
the other fails here (fsnet/config.py validates before anything imports the registries, so it keeps its own
Literal lists; the model kinds' pair is tests/model/test_registry.py's)."""

from __future__ import annotations

from typing import get_args

import pytest

from eval.scorer import BASELINES
from fsnet.catalog.sources import READERS
from fsnet.config import Config
from fsnet.index.faiss_index import KINDS
from fsnet.model.backbone import BACKBONES
from fsnet.model.variants import VARIANTS


def allowed(section: str, key: str) -> set[str]:
    """The values the config's ``section.key`` accepts (the Literal inside a list for a list key)."""
    annotation = Config.model_fields[section].annotation.model_fields[key].annotation
    args = get_args(annotation)
    if args and not isinstance(args[0], str):  # list[Literal[...]]
        args = get_args(args[0])
    return set(args)


@pytest.mark.parametrize(
    "section, key, registry",
    [
        ("model", "variant", VARIANTS),
        ("model", "backbone", BACKBONES),
        ("eval", "baselines", BASELINES),
        ("source", "kind", READERS),
        ("index", "kind", KINDS),
    ],
)
def test_the_config_accepts_exactly_the_registry(section, key, registry):
    assert allowed(section, key) == set(registry)

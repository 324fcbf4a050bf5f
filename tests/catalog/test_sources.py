"""The source registry and the config's source kinds name the same set: a kind the config accepts has a reader."""

from __future__ import annotations

import typing

from fsnet.catalog.sources import READERS
from fsnet.config import SourceConfig


def test_every_configurable_source_kind_has_a_reader():
    kinds = typing.get_args(SourceConfig.model_fields["kind"].annotation)
    assert sorted(kinds) == sorted(READERS)

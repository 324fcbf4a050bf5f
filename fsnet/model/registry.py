"""The one place that maps ``model.kind`` to its class. A new model is a file satisfying RetrievalModel
(retrieval_model.py) and one line in MODELS; ``fsnet/config.py`` lists the same kinds for validation
(tests/model/test_registry.py checks they agree)."""

from __future__ import annotations

from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.errors import ConfigError
from fsnet.model.adde import AttributeDrivenNet
from fsnet.model.backbone import build_backbone
from fsnet.model.fsnet import FashionSearchNet
from fsnet.model.retrieval_model import RetrievalModel

MODELS: dict[str, type] = {
    FashionSearchNet.kind: FashionSearchNet,  # "fsn"
    AttributeDrivenNet.kind: AttributeDrivenNet,  # "adde"
}


def model_class(kind: str) -> type:
    """The class of ``model.kind``; an unknown kind is a ConfigError naming it and the kinds there are."""
    try:
        return MODELS[kind]
    except KeyError:
        raise ConfigError(f"model.kind: unknown kind '{kind}' (kinds: {', '.join(MODELS)})") from None


def build_model(cfg: ModelConfig, schema: AttributeSchema, pretrained: bool = True) -> RetrievalModel:
    """The one constructor jobs use: ``model.kind`` picks the network. ``pretrained=False`` skips backbone weights
    (a checkpoint follows)."""
    cls = model_class(cfg.kind)
    backbone = build_backbone(
        cfg.backbone, cfg.weights if pretrained else "none", cfg.conv5_channels, cfg.conv67_channels
    )
    return cls(cfg, schema, backbone)

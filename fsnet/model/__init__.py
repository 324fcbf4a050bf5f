"""The FashionSearchNet-v2 network. ``build_model(cfg, schema)`` is the one constructor jobs use."""

from fsnet.model.checkpoint import load_model, save_model
from fsnet.model.fsnet import Embedding, FashionSearchNet, TrainOutputs, build_model
from fsnet.model.variants import VARIANTS, Variant

__all__ = [
    "Embedding",
    "FashionSearchNet",
    "TrainOutputs",
    "VARIANTS",
    "Variant",
    "build_model",
    "load_model",
    "save_model",
]

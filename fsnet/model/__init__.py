"""The retrieval models (FashionSearchNet-v2 and the ADDE-style peer). ``build_model(cfg, schema)`` is the one
constructor jobs use; ``RetrievalModel`` is what they may call."""

from fsnet.model.checkpoint import load_model, save_model
from fsnet.model.fsnet import FashionSearchNet
from fsnet.model.outputs import Embedding, TrainOutputs
from fsnet.model.registry import MODELS, build_model, model_class
from fsnet.model.retrieval_model import RetrievalModel
from fsnet.model.training_plan import Stage
from fsnet.model.variants import VARIANTS, Variant

__all__ = [
    "Embedding",
    "FashionSearchNet",
    "MODELS",
    "RetrievalModel",
    "Stage",
    "TrainOutputs",
    "VARIANTS",
    "Variant",
    "build_model",
    "load_model",
    "model_class",
    "save_model",
]

"""model.pt: the state dict with the model config and the attribute schema, loadable with weights_only=True, and
``logp_weight``: the weight of the classifiers' -log P(target) beside the model's distance that training chose on the
validation images (eval/fused_logp.py); None in a model trained before it, or where validation had no manipulation;
``tuned_blocks``: the trunk's last blocks that run on cached maps (fsnet/model/backbone.py; 0 in older models)."""

from __future__ import annotations

import io

import torch

import fsnet
from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.errors import ModelError
from fsnet.model.registry import build_model
from fsnet.model.retrieval_model import RetrievalModel
from fsnet.storage import Storage

FORMAT_VERSION = 1


def model_bytes(model: RetrievalModel) -> bytes:
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT_VERSION,
            "fsnet_version": fsnet.__version__,
            "model_config": model.cfg.model_dump(mode="json"),
            "schema": model.schema.model_dump(mode="json"),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "logp_weight": getattr(model, "logp_weight", None),
            "tuned_blocks": model.backbone.tuned_blocks,
        },
        buf,
    )
    return buf.getvalue()


def model_from_bytes(data: bytes, origin: str = "model.pt") -> RetrievalModel:
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        cfg = ModelConfig.model_validate(saved["model_config"])
        schema = AttributeSchema.model_validate(saved["schema"])
    except Exception as err:
        raise ModelError(f"{origin}: not an fsnet model checkpoint ({type(err).__name__}: {err})") from None
    model = build_model(cfg, schema, pretrained=False)
    model.load_state_dict(saved["state_dict"])
    model.backbone.set_tuned_blocks(saved.get("tuned_blocks", 0))
    model.logp_weight = saved.get("logp_weight")  # None: trained before the fusion (or no validation manipulation)
    return model


def save_model(model: RetrievalModel, url: str, storage: Storage) -> None:
    storage.write_bytes(url, model_bytes(model))


def load_model(url: str, storage: Storage) -> RetrievalModel:
    """The model at ``url`` on the CPU, in eval mode; move it with ``.to(device)``."""
    return model_from_bytes(storage.read_bytes(url), origin=url).eval()

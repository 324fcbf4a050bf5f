"""model.pt: the state dict with the model config and the attribute schema, loadable with weights_only=True, and
``logp_weight``: the weight of the classifiers' -log P(target) beside the model's distance that training chose on the
validation images (eval/fused_logp.py); None in a model trained before it, or where validation had no manipulation;
``tuned_blocks``: the trunk's last blocks that run on cached maps (fsnet/model/backbone.py; 0 in older models);
``probe_expert``: the joined probe's weight and width when the model has one (fsnet/model/probe_expert.py; its
tensors are in the state dict), None otherwise."""

from __future__ import annotations

import copy
import io

import torch

import fsnet
from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.errors import ModelError
from fsnet.model.probe_expert import ProbeExpert
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
            "probe_expert": _expert_shape(model.probe_expert),
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
    model.backbone.set_tuned_blocks(saved.get("tuned_blocks", 0))
    expert = saved.get("probe_expert")  # absent in older models
    if expert is not None:  # its tensors are loaded with the model's: the blocks' shapes are the tuned blocks'
        blocks = copy.deepcopy(model.backbone.tuned())
        model.probe_expert = ProbeExpert(blocks, expert["pooled_channels"], list(schema.num_values), expert["weight"])
    model.load_state_dict(saved["state_dict"])
    model.logp_weight = saved.get("logp_weight")  # None: trained before the fusion (or no validation manipulation)
    return model


def _expert_shape(expert: ProbeExpert | None) -> dict | None:
    return None if expert is None else {"weight": float(expert.weight), "pooled_channels": expert.linear.in_features}


def save_model(model: RetrievalModel, url: str, storage: Storage) -> None:
    storage.write_bytes(url, model_bytes(model))


def load_model(url: str, storage: Storage) -> RetrievalModel:
    """The model at ``url`` on the CPU, in eval mode; move it with ``.to(device)``."""
    return model_from_bytes(storage.read_bytes(url), origin=url).eval()

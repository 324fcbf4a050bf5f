"""An ADDE-M-style network (Hou, Vig, Donoser, Bazzani, ICCV 2021: "Learning Attribute-driven Disentangled
Representations for Interactive Fashion Retrieval"), written from the method's description: the peer fsnet
compares FashionSearchNet-v2 with in the same jobs and report.

images -> the shared backbone -> GAP of conv7 -> one small MLP per attribute -> chunk a of the disentangled
embedding (A chunks of D) -> one classifier per chunk. The memory block (disentangled_memory.py) maps one-hot
values to prototypes; a manipulation adds M i to the concatenated chunks. The embedding is the concatenation
(r = A * D), linear in M, so the index and the factorized evaluation serve it as they serve FashionSearchNet.

Training (``training_plan``, run by jobs/train.py): stage 1 chunk classification (train.stage1), the memory from
the mean chunk features per value, stage 3 manipulation training on images (train.adde; fsnet/training.py
manipulation_step).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.model.backbone import Backbone, ImageNetNormalize
from fsnet.model.disentangled_memory import DisentangledMemory
from fsnet.model.heads import GroupedLinear
from fsnet.model.localization import whole_boxes
from fsnet.model.mask_dropout import MaskDropout
from fsnet.model.outputs import Embedding, TrainOutputs
from fsnet.model.probe_expert import ProbeExpert
from fsnet.model.training_plan import Stage


class AttributeDrivenNet(nn.Module):
    kind = "adde"
    manipulation = "additive"  # a manipulation adds M i, a difference of memory prototypes (eval/additive_memory.py)
    method = "adde"  # the name results and reports give this model
    variant = None  # FashionSearchNet's ablation switches do not apply: every loss term as configured

    def __init__(self, cfg: ModelConfig, schema: AttributeSchema, backbone: Backbone):
        super().__init__()
        self.cfg, self.schema = cfg, schema
        num_values = schema.num_values
        attributes = len(num_values)
        self.normalize = ImageNetNormalize()
        self.backbone = backbone
        self.dropout = MaskDropout(cfg.dropout)
        self.fc1 = GroupedLinear(attributes, backbone.conv7_channels, cfg.fc_dim)  # the per-attribute MLPs
        self.fc2 = GroupedLinear(attributes, cfg.fc_dim, cfg.embed_dim)
        self.classifiers = nn.ModuleList(nn.Linear(cfg.embed_dim, v) for v in num_values)
        self.memory = DisentangledMemory(num_values, cfg.embed_dim)
        self.probe_expert: ProbeExpert | None = None  # joined to the classifiers after training (train.probe_expert)

    @property
    def global_dim(self) -> int:
        return len(self.schema.num_values) * self.cfg.embed_dim

    def chunks(self, images: torch.Tensor, from_trunk: bool = False) -> tuple[torch.Tensor, tuple[int, int]]:
        """images (B, 3, H, W), or with ``from_trunk`` the frozen trunk's maps -> the disentangled embedding
        (B, A, D) and conv7's (H, W)."""
        _, conv7 = self.backbone(images if from_trunk else self.normalize(images), from_trunk)  # (B, C7, H/16, W/16)
        pooled = conv7.mean(dim=(2, 3))  # GAP: (B, C7)
        # (B, A, C7): every attribute's MLP reads the same pooled features
        x = pooled.unsqueeze(1).expand(-1, len(self.classifiers), -1)
        x = torch.relu(self.fc1(self.dropout(x)))  # (B, A, fc_dim)
        return self.fc2(self.dropout(x)), (conv7.shape[2], conv7.shape[3])  # (B, A, D)

    def chunk_logits(self, reps: torch.Tensor) -> list[torch.Tensor]:
        """(B, A, D) -> (B, V_a) per attribute: each chunk's own classifier."""
        return [classifier(reps[:, a]) for a, classifier in enumerate(self.classifiers)]

    def forward(self, images: torch.Tensor, heads: bool = True, from_trunk: bool = False) -> TrainOutputs:
        """One training pass (``heads`` is FashionSearchNet's switch; the chunks are needed in every stage)."""
        reps, _ = self.chunks(images, from_trunk)
        return TrainOutputs(logits=self.chunk_logits(reps), reps=reps, rep_logits=[], boxes=None)

    def embed(self, images: torch.Tensor, from_trunk: bool = False) -> Embedding:
        """Chunks, predictions from the chunk classifiers, and whole-image boxes (no localization); ``from_trunk``:
        ``images`` are the frozen trunk's maps. With a probe expert the predictions and probabilities are the joined
        experts' (fsnet/model/probe_expert.py)."""
        cached = images if from_trunk else self.backbone.cached()(self.normalize(images))  # (B, C, h, w)
        reps, (h, w) = self.chunks(cached, from_trunk=True)
        logits = self.chunk_logits(reps)
        if self.probe_expert is not None:
            logits = self.probe_expert.join(logits, cached)
        return Embedding.of(reps, logits, whole_boxes(len(reps), len(logits), h, w, reps.device), (h, w))

    def global_representation(
        self, reps: torch.Tensor, manipulation: torch.Tensor | None = None, values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The concatenated chunks (B, A * D), plus M i when ``manipulation`` (B, A; new value or -1) changes values
        from ``values`` (B, A; the query's current values, -1 unknown)."""
        features = reps.flatten(1)
        if manipulation is None:
            return features
        if values is None:
            raise ValueError("the ADDE-style model's manipulation needs the query's current values (-1 where unknown)")
        return self.memory.manipulate(features, self.memory.indicator(values, manipulation))

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """1: backbone, chunk MLPs and classifiers (chunk classification); 2: nothing (the memory is set from
        features); 3: everything, the memory block included (manipulation training)."""
        network = [p for m in (self.backbone, self.fc1, self.fc2, self.classifiers) for p in m.parameters()]
        if stage == 1:
            return network
        if stage == 2:
            return []
        if stage == 3:
            return [*network, self.memory.weight]
        raise ValueError(f"stage {stage}: stages are 1, 2, 3")

    @classmethod
    def training_plan(cls, cfg: ModelConfig) -> list[Stage]:
        """Stage 1 chunk classification on images, the memory from the mean chunk features per value, then stage 3
        manipulation training on images with train.adde's weights (its stage 2, nothing, is not run)."""
        return [
            Stage("stage1", 1, "images", section="stage1", step="local"),
            Stage.memory(),
            Stage("stage3", 3, "images", section="adde", step="manipulation"),
        ]

    def attention(self, images: torch.Tensor, attribute: int) -> None:
        """No localization: the explanation shows the query without a map or box."""
        return None

    def summary_figures(self) -> dict[str, Any]:
        """The memory's off-diagonal share, |off-diagonal blocks|_1 / |M|_1: how block-diagonal it is."""
        with torch.no_grad():
            total = float(self.memory.weight.abs().sum())
            off = float(self.memory.off_diagonal().abs().sum())
        return {"memory_off_diagonal_share": off / total if total else 0.0}

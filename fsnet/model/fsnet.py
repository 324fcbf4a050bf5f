"""FashionSearchNet-v2 (paper Fig. 2): backbone -> GAP classifiers and attribute activation maps -> boxes ->
ROI-pooled per-attribute representations fc10_a -> memory block and global representation F.

Inputs are images (B, 3, H, W), uint8 0..255 or float 0..1, normalised inside the model with the mean and std the
torchvision ImageNet weights were trained with (the paper subtracts the mean only, as its Caffe AlexNet expected;
torchvision's weights expect both, and the same normalisation serves the weight-less backbones).
"""

from __future__ import annotations

import torch
from torch import nn

from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.model.backbone import Backbone, ImageNetNormalize
from fsnet.model.global_representation import GlobalRepresentation
from fsnet.model.heads import AttributeHeads
from fsnet.model.localization import attribute_maps, boxes_from_maps, whole_boxes
from fsnet.model.memory import MemoryBlock
from fsnet.model.outputs import Embedding, TrainOutputs
from fsnet.model.probe_expert import ProbeExpert
from fsnet.model.training_plan import Stage
from fsnet.model.variants import VARIANTS


class FashionSearchNet(nn.Module):
    kind = "fsn"
    manipulation = "replace"  # a manipulated slot is replaced by its memory row (eval/linear_global.py)

    def __init__(self, cfg: ModelConfig, schema: AttributeSchema, backbone: Backbone):
        super().__init__()
        self.cfg, self.schema = cfg, schema
        self.variant = VARIANTS[cfg.variant]
        num_values = schema.num_values
        attributes = len(num_values)
        self.backbone = backbone
        self.classifiers = nn.ModuleList(nn.Linear(backbone.conv7_channels, v) for v in num_values)
        self.heads = AttributeHeads(
            attributes,
            backbone.conv5_channels,
            cfg.roi_size,
            cfg.fc_dim,
            cfg.embed_dim,
            cfg.dropout,
            self.variant.fusion,
        )
        self.rep_classifiers = nn.ModuleList(nn.Linear(cfg.embed_dim, v) for v in num_values)
        self.memory = MemoryBlock(num_values, cfg.embed_dim, updatable=self.variant.memory_updatable)
        self.global_rep = GlobalRepresentation(
            attributes, cfg.embed_dim, cfg.global_dim, learned=self.variant.global_learning
        )
        self.normalize = ImageNetNormalize()
        self.probe_expert: ProbeExpert | None = None  # joined to the classifiers after training (train.probe_expert)

    @property
    def method(self) -> str:
        """The name results and reports give this model: its variant."""
        return self.cfg.variant

    @property
    def global_dim(self) -> int:
        """r, the width of the global representation the index holds."""
        return self.global_rep.dim

    # ----- the pieces, in the order of the network --------------------------------------------------------
    def forward_features(self, images: torch.Tensor, from_trunk: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> conv5 (B, C5, H/16, W/16), conv7 (B, C7, H/16, W/16). ``from_trunk``: ``images``
        are the frozen trunk's maps (B, C, H/16, W/16) instead (train.trunk: frozen)."""
        return self.backbone(images if from_trunk else self.normalize(images), from_trunk)

    def attribute_logits(self, conv7: torch.Tensor) -> list[torch.Tensor]:
        pooled = conv7.mean(dim=(2, 3))  # GAP: (B, C7)
        return [classifier(pooled) for classifier in self.classifiers]  # (B, V_a) each

    def attribute_maps(self, conv7: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
        """Class activation maps of each attribute's highest-scoring value (Eq. 3): (B, A, H, W)."""
        rows = torch.stack([c.weight[lg.argmax(dim=1)] for c, lg in zip(self.classifiers, logits)], dim=1)  # (B, A, C7)
        return attribute_maps(conv7, rows.to(conv7.dtype))

    def attribute_boxes(self, conv7: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
        """(B, A, 4) boxes in conv5 cells; the whole map for variants without localization."""
        b, _, h, w = conv7.shape
        if not self.variant.localization:
            return whole_boxes(b, len(logits), h, w, conv7.device)
        with torch.no_grad():  # thresholding and region choice are not differentiable
            return boxes_from_maps(self.attribute_maps(conv7, logits), self.cfg.roi_threshold)

    def local_representations(self, conv5: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.heads(conv5, boxes)  # (B, A, D)

    # ----- what jobs call ----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, heads: bool = True, from_trunk: bool = False) -> TrainOutputs:
        """One training pass; ``heads=False`` (stage 1) stops after the GAP classifiers; ``from_trunk``: ``images``
        are the frozen trunk's maps."""
        conv5, conv7 = self.forward_features(images, from_trunk)
        logits = self.attribute_logits(conv7)
        if not heads:
            return TrainOutputs(logits=logits, reps=None, rep_logits=[], boxes=None)
        boxes = self.attribute_boxes(conv7, logits)
        reps = self.local_representations(conv5, boxes)
        rep_logits = [classifier(reps[:, a]) for a, classifier in enumerate(self.rep_classifiers)]
        return TrainOutputs(logits=logits, reps=reps, rep_logits=rep_logits, boxes=boxes)

    def embed(self, images: torch.Tensor, from_trunk: bool = False) -> Embedding:
        """Attribute representations, predictions and boxes of ``images`` (call in eval mode, no grad);
        ``from_trunk``: ``images`` are the frozen trunk's maps (training's validation). With a probe expert the
        predictions and probabilities are the joined experts' (fsnet/model/probe_expert.py)."""
        cached = images if from_trunk else self.backbone.cached()(self.normalize(images))  # (B, C, h, w)
        conv5, conv7 = self.forward_features(cached, from_trunk=True)
        logits = self.attribute_logits(conv7)
        boxes = self.attribute_boxes(conv7, logits)  # the model's own classifiers localize
        reps = self.local_representations(conv5, boxes)
        if self.probe_expert is not None:
            logits = self.probe_expert.join(logits, cached)
        return Embedding.of(reps, logits, boxes, (conv5.shape[2], conv5.shape[3]))

    def global_representation(
        self, reps: torch.Tensor, manipulation: torch.Tensor | None = None, values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """F (B, r) of attribute representations (B, A, D), after replacing the slots that ``manipulation``
        (B, A; target value or -1 to keep) changes by their memory rows. ``values`` (the query's current values)
        do not matter here: a replacement does not depend on what it replaces."""
        if manipulation is not None:
            reps = self.memory.manipulate(reps, manipulation)
        return self.global_rep(reps)

    @classmethod
    def training_plan(cls, cfg: ModelConfig) -> list[Stage]:
        """Stage 1 (L_C) and stage 2 (L_C + L_T + L_TC) on images, the memory block from the fixed features, then
        stage 3 (L_G) on those features for the variants that learn the global representation."""
        plan = [
            Stage("stage1", 1, "images", section="stage1", step="local"),
            Stage("stage2", 2, "images", section="stage2", step="local"),
            Stage.memory(),
        ]
        if VARIANTS[cfg.variant].global_learning:
            plan.append(Stage("stage3", 3, "features", section="stage3", step="global"))
        return plan

    def summary_figures(self) -> dict:
        """Nothing beyond what every model reports."""
        return {}

    def attention(self, images: torch.Tensor, attribute: int) -> tuple[torch.Tensor, list[float]]:
        """What the explanation draws: the attribute map (H, W) of one image (1, 3, S, S) and its box in conv5
        cells (x0, y0, x1, y1)."""
        with torch.no_grad():
            _, conv7 = self.forward_features(images)
            maps = self.attribute_maps(conv7, self.attribute_logits(conv7))  # (1, A, H, W)
            box = boxes_from_maps(maps, self.cfg.roi_threshold)[0, attribute].tolist()
        return maps[0, attribute], box

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """What each training stage updates: 1 backbone and classifiers (L_C); 2 those plus the heads and the
        fc10 classifiers (L_T, L_TC); 3 lambda_a, w_r and, for "Full", the memory block (L_G)."""
        if stage == 1:
            modules: list[nn.Module] = [self.backbone, self.classifiers]
        elif stage == 2:
            modules = [self.backbone, self.classifiers, self.heads, self.rep_classifiers]
        elif stage == 3:
            params = list(self.global_rep.parameters())
            if self.variant.memory_updatable:
                params.append(self.memory.table)
            return params
        else:
            raise ValueError(f"stage {stage}: stages are 1, 2, 3")
        return [p for m in modules for p in m.parameters()]

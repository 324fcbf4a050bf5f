"""What a training stage checks its epochs against: the validation images (carved from the training split,
fsnet/validation.py) as the model's inputs, their labels, and a sample of training images whose mean features stand
in for the memory block while it does not exist yet (stage 2 ranks manipulations with it; the memory stage later
builds the real one from every training image the same way).

Inputs are what the stage's model reads: the frozen trunk's cached maps (train.trunk: frozen) or the plain resized
images (finetune), at most ``IMAGES`` of each kind, a seeded choice, so a large catalog's validation stays seconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from fsnet.model.memory import value_sums
from fsnet.model.retrieval_model import RetrievalModel

IMAGES = 2048  # validation images scored per epoch, and training images whose means stand in for the memory
EMBED_BATCH = 256


@dataclass
class ValidationSet:
    inputs: np.ndarray  # (V, C, h, w) float16 maps, or (V, 3, S, S) uint8 images
    labels: np.ndarray  # (V, A) int16, -1 unknown
    memory_inputs: np.ndarray  # (T, ...) as inputs: training images
    memory_labels: np.ndarray  # (T, A)
    from_trunk: bool

    def embed(self, model: RetrievalModel, inputs: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """(reps (N, A, D), predicted (N, A)) of ``inputs`` by ``model`` in eval mode, without gradient."""
        reps, predicted, _ = self.outputs(model, inputs, device)
        return reps, predicted

    def outputs(
        self, model: RetrievalModel, inputs: np.ndarray, device: torch.device
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reps (N, A, D), predicted (N, A), probabilities (N, C)) of ``inputs`` by ``model`` in eval mode."""
        model.eval()
        reps, predicted, probabilities = [], [], []
        with torch.no_grad():
            for lo in range(0, len(inputs), EMBED_BATCH):
                x = torch.tensor(inputs[lo : lo + EMBED_BATCH], device=device)  # a copy: the cache is read-only
                emb = model.embed(x.float() if self.from_trunk else x, from_trunk=self.from_trunk)
                reps.append(emb.reps.float().cpu().numpy())
                predicted.append(emb.predicted.cpu().numpy())
                probabilities.append(emb.probabilities.float().cpu().numpy())
        return np.concatenate(reps), np.concatenate(predicted), np.concatenate(probabilities)

    def accuracy(self, predicted: np.ndarray) -> float:
        """Mean over attributes of the classifiers' accuracy on the known validation labels."""
        known = self.labels >= 0
        per = [(predicted[known[:, a], a] == self.labels[known[:, a], a]).mean() for a in range(self.labels.shape[1])]
        return float(np.mean([p for p in per if np.isfinite(p)]))

    def with_sample_memory(self, model: RetrievalModel, device: torch.device) -> RetrievalModel:
        """A copy of ``model`` whose memory block is the mean feature per value of the training sample."""
        reps, _ = self.embed(model, self.memory_inputs, device)
        sums, counts = value_sums(
            torch.from_numpy(reps), torch.from_numpy(self.memory_labels.astype(np.int64)), model.schema.num_values
        )
        scored = copy.deepcopy(model)
        scored.memory.set_means(sums.to(device), counts.to(device))
        return scored

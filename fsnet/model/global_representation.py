"""The global representation (paper Eq. 7): F = [lambda_1 s_1, ..., lambda_A s_A] w_r, with learned positive
lambda_a and w_r: (A * D) -> r. F is linear in each attribute slot: with W_a the a-th (D, r) block of w_r,
F = sum_a lambda_a s_a W_a, which the evaluation uses to share work across the values of one attribute.

Variants without global representation learning use F = [s_1, ..., s_A] (lambda = 1, w_r = identity, r = A*D):
the concatenation the paper's "w/o Rank", "Rank" and "Rank-L" rows retrieve with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalRepresentation(nn.Module):
    def __init__(self, attributes: int, embed_dim: int, global_dim: int, learned: bool):
        super().__init__()
        self.attributes, self.embed_dim, self.learned = attributes, embed_dim, learned
        if learned:
            # lambda_a = softplus(rho_a) > 0, starting at 1; w_r starts as a scaled random projection.
            self.rho = nn.Parameter(torch.full((attributes,), float(torch.log(torch.expm1(torch.tensor(1.0))))))
            self.w_r = nn.Parameter(torch.randn(attributes * embed_dim, global_dim) / (attributes * embed_dim) ** 0.5)
            self.dim = global_dim
        else:
            self.dim = attributes * embed_dim

    @property
    def lambdas(self) -> torch.Tensor:
        """(A,) the positive attribute weights."""
        if self.learned:
            return F.softplus(self.rho)
        return torch.ones(self.attributes)

    def blocks(self) -> torch.Tensor:
        """(A, D, r): W_a for each attribute, so that F = sum_a lambda_a s_a W_a."""
        if self.learned:
            return self.w_r.view(self.attributes, self.embed_dim, self.dim)
        eye = torch.eye(self.dim)
        return eye.view(self.attributes, self.embed_dim, self.dim)

    def forward(self, reps: torch.Tensor) -> torch.Tensor:
        """reps (B, A, D) -> F (B, r)."""
        if not self.learned:
            return reps.flatten(1)
        weighted = reps * self.lambdas.to(reps.dtype).view(1, -1, 1)  # (B, A, D)
        return weighted.flatten(1) @ self.w_r.to(reps.dtype)  # (B, r)

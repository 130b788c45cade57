"""Classification heads for face training: cosine logits and additive-margin softmax.

MarginSoftmax turns the target column's cosine into the margin logit, then scales everything
by s. The generic form (insightface's combined margin) is cos(m1*theta + m2) - m3:
arcface = (1, m2, 0), cosface = (1, 0, m3), combined = (m1, m2, m3); a margin the chosen kind does
not use is refused (except cosface ignoring m2, whose default is arcface's 0.5).

When m1*theta + m2 passes pi, cos() would turn back up and *reward* a worse angle. Like
insightface, we switch to a cosface-style margin there, but with the offset chosen so the
target logit stays continuous and strictly increasing in cos(theta):
    cos(theta) - (1 + cos(theta_t)) - m3,  theta_t = (pi - m2) / m1
(insightface's `cos - sin(pi - m) * m` leaves a jump of about 0.12 at theta_t for m = 0.5).
Angles are taken from a slightly clamped cosine so the arccos gradient stays finite.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("arcface", "cosface", "combined")
_CLAMP = 1e-7


class CosineClassifier(nn.Module):
    """Logits = cos(angle between the L2-normalised embedding and each class centre)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, 0, 0.01)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings), F.normalize(self.weight))


class MarginSoftmax(nn.Module):
    """Scaled logits with a margin on each row's target column (label -1: no margin)."""

    def __init__(self, kind: str = "arcface", s: float = 64.0, m1: float = 1.0, m2: float = 0.5,
                 m3: float = 0.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown margin kind {kind!r}; choose one of {', '.join(KINDS)}")
        if kind == "arcface" and (m1 != 1.0 or m3 != 0.0):
            raise ValueError("arcface uses only m2; use kind='combined' for m1/m3 margins")
        if kind == "cosface":
            if m1 != 1.0:
                raise ValueError("cosface uses only m3; use kind='combined' for an m1 margin")
            m2 = 0.0  # the signature's default m2 is arcface's
            if m3 <= 0:
                raise ValueError("cosface needs a margin m3 > 0 (insightface uses 0.4)")
        if m1 <= 0 or m2 < 0 or m3 < 0:
            raise ValueError(f"margins must satisfy m1 > 0, m2 >= 0, m3 >= 0 (got {m1}, {m2}, {m3})")
        self.kind, self.s, self.m1, self.m2, self.m3 = kind, float(s), float(m1), float(m2), float(m3)
        turn = (math.pi - self.m2) / self.m1  # angle where m1*theta + m2 reaches pi
        self.cos_turn = math.cos(turn) if turn < math.pi else -2.0  # -2: never turns

    def target_logit(self, cosine: torch.Tensor) -> torch.Tensor:
        """The margin version of target cosines (unscaled)."""
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cosine - self.m3
        theta = torch.acos(cosine.clamp(-1 + _CLAMP, 1 - _CLAMP))
        margin = torch.cos(self.m1 * theta + self.m2)
        beyond = cosine - (1.0 + self.cos_turn)
        return torch.where(cosine > self.cos_turn, margin, beyond) - self.m3

    def forward(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # every row gets a (clamped) column, kept only where it has a label: shapes never depend on the
        # data, so no step waits for the GPU to count the labelled rows
        rows = torch.arange(cosine.shape[0], device=cosine.device)
        cols = labels.clamp_min(0)
        if cosine.dtype not in (torch.float32, torch.float64):
            cosine = cosine.float()  # margins need more precision than fp16/bf16 under AMP
        target = cosine[rows, cols]
        logits = cosine.index_put((rows, cols), torch.where(labels != -1, self.target_logit(target), target))
        return logits * self.s

    def extra_repr(self) -> str:
        return f"kind={self.kind}, s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}"

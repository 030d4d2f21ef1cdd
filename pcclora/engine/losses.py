"""The classification loss: cross-entropy, optionally with Point-BERT's label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of (B, C) logits against (B,) labels.

    With ``smoothing = eps > 0`` the target keeps ``1 - eps`` and every other class gets
    ``eps / (C - 1)`` (Point-BERT's form; torch's ``label_smoothing`` would spread ``eps / C`` over
    all classes including the target, which is a different loss).
    """
    labels = labels.long()
    if smoothing <= 0.0:
        return F.cross_entropy(logits, labels)
    num_classes = logits.shape[1]
    log_probs = F.log_softmax(logits.float(), dim=1)
    target = torch.full_like(log_probs, smoothing / (num_classes - 1))
    target.scatter_(1, labels.view(-1, 1), 1.0 - smoothing)
    return -(target * log_probs).sum(dim=1).mean()

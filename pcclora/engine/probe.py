"""A linear probe: multinomial logistic regression on frozen features, the pre-training validation.

Pre-training has no accuracy of its own. As the official runners validate a pre-training run
(Point-BERT's ``validate``, Point-MAE's commented-out one: a linear SVM on ModelNet40
features), the toolkit fits a **linear classifier on frozen features** of a labelled set's
training split and reports its accuracy on the test split: how linearly separable the
encoder's features make the classes. It is not a fine-tuned accuracy (no weight of the encoder
changes) and is far below one.

The classifier (chosen instead of a linear SVM, so that nothing beyond torch is needed):
features are standardised with the training split's mean and standard deviation, then
``W`` (D × C) and ``b`` (C) minimise

    mean cross-entropy(x W + b, y) + l2 / 2 · ‖W‖²

from zero with L-BFGS (strong-Wolfe line search, at most ``max_iter`` iterations) in float64 on
the CPU. The objective is strictly convex, so the result does not depend on a seed; it is
deterministic on one machine and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backbones.errors import InputShapeError
from pcclora.engine.metrics import Accuracy


@dataclass
class LinearProbe:
    """A fitted probe: standardisation and the linear layer (float64, CPU)."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    loss: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(S, D) features → (S, C) logits."""
        return ((features.double().cpu() - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(S, D) features → (S,) class indices."""
        return self.logits(features).argmax(dim=1)


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-3, max_iter: int = 200
) -> LinearProbe:
    """Fit the probe of the module docstring.

    Args:
        features: (S, D) training features (any float dtype, any device).
        labels: (S,) class indices in 0..num_classes-1.
        l2: the L2 penalty (≥ 0) on the weights (not the bias).
        max_iter: L-BFGS iterations.

    Raises:
        InputShapeError: mismatched shapes, no sample, labels out of range, non-finite features.
    """
    x = features.detach().double().cpu()
    y = labels.detach().long().cpu().reshape(-1)
    if x.dim() != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputShapeError(
            f"a probe needs (S, D) features and (S,) labels, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if bool((y < 0).any()) or bool((y >= num_classes).any()):
        raise InputShapeError(f"probe labels must lie in 0..{num_classes - 1}")
    if not bool(torch.isfinite(x).all()):
        raise InputShapeError("probe features hold NaN or Inf")
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=int(max_iter),
        history_size=20,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        final = float(closure().detach())
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    return LinearProbe(mean, std, weight.detach(), bias.detach(), iterations, final)


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> Accuracy:
    """Fit on the training features and score the test features (OA, mAcc, confusion)."""
    probe = fit_linear_probe(train_features, train_labels, num_classes, l2, max_iter)
    return Accuracy.from_predictions(probe.predict(test_features), test_labels.long().cpu(), num_classes)

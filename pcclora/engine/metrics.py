"""Classification metrics from predictions: overall accuracy, mean class accuracy, confusion."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class.

    Args:
        predictions: (S,) predicted class indices.
        labels: (S,) true class indices.
    """
    index = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Accuracy:
    """Test accuracies in percent, and the confusion matrix they come from."""

    overall: float
    mean_class: float
    confusion: torch.Tensor

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor) -> Accuracy:
        """OA = trace / total; mAcc = mean over the classes present in the labels of their recall."""
        confusion = confusion.to(torch.float64)
        total = confusion.sum()
        overall = float(confusion.trace() / total * 100.0) if total > 0 else 0.0
        per_class = confusion.sum(dim=1)
        present = per_class > 0
        recalls = confusion.diagonal()[present] / per_class[present]
        mean_class = float(recalls.mean() * 100.0) if present.any() else 0.0
        return cls(overall=overall, mean_class=mean_class, confusion=confusion.to(torch.int64))

    def per_class(self, class_names: list[str] | None = None) -> list[dict[str, object]]:
        """One ``{"class", "samples", "accuracy"}`` per class (accuracy None for a class with no sample)."""
        counts = self.confusion.sum(dim=1)
        rows = []
        for index, samples in enumerate(counts.tolist()):
            name = class_names[index] if class_names and index < len(class_names) else f"class {index}"
            accuracy = 100.0 * float(self.confusion[index, index]) / samples if samples else None
            rows.append({"class": name, "samples": int(samples), "accuracy": accuracy})
        return rows

    @classmethod
    def from_predictions(cls, predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Accuracy:
        """From predicted and true class indices, both (M,)."""
        return cls.from_confusion(confusion_matrix(predictions, labels, num_classes))

"""Classification metrics that stay honest on imbalanced data: accuracy, per-class recall, macro-F1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationReport:
    """Metrics from a confusion matrix (rows: true class, columns: predicted class)."""

    confusion: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def per_class_recall(self) -> np.ndarray:
        """Recall per class; NaN for a class with no true samples."""
        support = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.confusion) / np.maximum(support, 1), np.nan)

    @property
    def per_class_f1(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(float)
        support = self.confusion.sum(axis=1)
        predicted = self.confusion.sum(axis=0)
        denom = support + predicted
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that occur (as truth or prediction); classes absent from both are left out."""
        f1 = self.per_class_f1
        present = ~np.isnan(f1)
        return float(f1[present].mean()) if present.any() else float("nan")

    def as_dict(self, class_names: tuple[str, ...] | None = None) -> dict:
        names = class_names or tuple(str(i) for i in range(len(self.confusion)))
        recall = self.per_class_recall
        return {
            "num_samples": self.num_samples,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class_recall": {n: (None if np.isnan(r) else float(r)) for n, r in zip(names, recall)},
            "confusion_matrix": self.confusion.tolist(),
        }


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)

"""The pipelines' metrics, computed by scikit-learn as their scripts compute them.

Accuracy for every task; for two classes also F1 of class 1 (``f1_score(average="binary")``) and the Matthews
correlation coefficient (``matthews_corrcoef``). Which one a table reports is the task's (:mod:`.tasks`); which one
picks the best checkpoint is the protocol's (:mod:`.protocols`).
"""

from __future__ import annotations

import numpy as np


def classification_metrics(labels, predictions, num_labels: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y, p = np.asarray(labels), np.asarray(predictions)
    out = {"accuracy": float(accuracy_score(y, p))}
    if num_labels == 2:
        out["f1"] = float(f1_score(y, p, average="binary", zero_division=0.0))
        out["mcc"] = float(matthews_corrcoef(y, p))
    return out

"""The metric arithmetic against hand-computed cases (MCC, F1, accuracy)."""

import math

import pytest

from babyllama.finetuning.metrics import classification_metrics


def test_confusion_matrix_by_hand():
    # TP = 2 (0, 4), FN = 1 (1), FP = 1 (3), TN = 2 (2, 5)
    m = classification_metrics([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0], 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2TP / (2TP + FP + FN)
    assert m["mcc"] == pytest.approx((2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3))


def test_unbalanced_case_by_hand():
    # TP = 3, FN = 1, FP = 2, TN = 4
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    m = classification_metrics(y, p, 2)
    assert m["f1"] == pytest.approx(6 / (6 + 2 + 1))
    assert m["mcc"] == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5))


def test_degenerate_predictions():
    # always class 0: no positive predictions -> F1 0, MCC 0 (sklearn's convention); inverted -> MCC -1
    m = classification_metrics([1, 0, 1, 0], [0, 0, 0, 0], 2)
    assert (m["f1"], m["mcc"], m["accuracy"]) == (0.0, 0.0, 0.5)
    assert classification_metrics([1, 0, 1, 0], [0, 1, 0, 1], 2)["mcc"] == pytest.approx(-1.0)


def test_three_classes_accuracy_only():
    m = classification_metrics([0, 1, 2, 2], [0, 2, 2, 2], 3)
    assert m == {"accuracy": 0.75}

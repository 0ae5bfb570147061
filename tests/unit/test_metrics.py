import numpy as np
import pytest
from sklearn import metrics as skm

from audioclf.metrics import classification_report, confusion_matrix, softmax


def test_report_matches_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = softmax(rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[y])
    pred = probs.argmax(1)
    head, per_class = classification_report(y, probs, ["a", "b", "c", "d"], top_k=2)
    assert np.isclose(head["accuracy"], skm.accuracy_score(y, pred))
    assert np.isclose(head["f1_macro"], skm.f1_score(y, pred, average="macro"))
    assert np.isclose(head["f1_weighted"], skm.f1_score(y, pred, average="weighted"))
    assert np.isclose(head["precision_macro"], skm.precision_score(y, pred, average="macro"))
    assert np.isclose(head["iou_macro"], skm.jaccard_score(y, pred, average="macro"))
    assert np.isclose(head["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    assert np.isclose(head["top2_accuracy"], skm.top_k_accuracy_score(y, probs, k=2))
    assert head["n"] == 200
    assert np.isclose(per_class["b"]["f1"], skm.f1_score(y, pred, average=None)[1])
    assert per_class["c"]["support"] == int((y == 2).sum())


def test_confusion_rows_are_true_classes():
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([1, 0, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_temperature_scaling_recovers_an_overconfidence_factor_and_lowers_ece():
    from audioclf.calibration import expected_calibration_error, fit_temperature, nll

    rng = np.random.default_rng(0)
    n, k = 4000, 5
    logits = rng.normal(0, 1.5, (n, k))
    probs = softmax(logits)
    y = np.array([rng.choice(k, p=p) for p in probs])  # labels drawn from the probs: calibrated
    overconfident = 3.0 * logits
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(overconfident, y, t) < nll(overconfident, y)
    before = expected_calibration_error(y, softmax(overconfident))
    after = expected_calibration_error(y, softmax(overconfident / t))
    assert after < 0.03 < before
    assert np.array_equal(softmax(overconfident / t).argmax(1), overconfident.argmax(1))  # argmax unchanged

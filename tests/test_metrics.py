"""Classification metrics (numbacnn/metrics.py) against hand-computed cases and brute force."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbacnn.metrics import (accuracy, auc, classification_report, confusion_matrix, format_report,
                              per_class_scores, roc_auc_ovr, roc_curve)


def pairwise_auc(y_binary, scores):
    """Mann-Whitney estimate: P(score of a positive > score of a negative), ties count 1/2."""
    pos, neg = scores[y_binary], scores[~y_binary]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 0])


def test_confusion_matrix_and_accuracy_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]          # rows true, columns predicted
    assert accuracy(Y_TRUE, Y_PRED) == 0.7
    assert confusion_matrix([1], [1], num_classes=3).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="y_true must be a 1-D integer"):
        accuracy([0.5, 1.0], [0, 1])


def test_per_class_scores_by_hand():
    s = per_class_scores(confusion_matrix(Y_TRUE, Y_PRED))
    # class 0: tp 3, fp 1, fn 1, tn 5; class 1: tp 1, fp 1, fn 1, tn 7; class 2: tp 3, fp 1, fn 1, tn 5
    assert np.allclose(s["precision"], [3 / 4, 1 / 2, 3 / 4])
    assert np.allclose(s["recall"], [3 / 4, 1 / 2, 3 / 4])
    assert np.allclose(s["specificity"], [5 / 6, 7 / 8, 5 / 6])
    assert np.allclose(s["f1"], [3 / 4, 1 / 2, 3 / 4])
    assert s["support"].tolist() == [4, 2, 4]
    # a class never predicted and never present: every ratio with a zero denominator is 0
    z = per_class_scores(np.array([[2, 0], [0, 0]]))
    assert z["precision"].tolist() == [1.0, 0.0] and z["recall"].tolist() == [1.0, 0.0]
    assert z["specificity"].tolist() == [0.0, 1.0]


def test_roc_curve_with_ties_by_hand():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.9, 0.5, 0.1])
    thr, fpr, tpr = roc_curve(y, s)
    assert thr[0] == np.inf and thr[1:].tolist() == [0.9, 0.5, 0.1]
    assert fpr.tolist() == [0, 0.5, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1]
    assert auc(fpr, tpr) == pytest.approx(0.625)                       # = pairwise: (0.5 + 1 + 0 + 1) / 4
    assert auc(*roc_curve(np.array([1, 1, 0, 0]), np.array([4, 3, 2, 1]))[1:]) == 1.0
    assert auc(*roc_curve(np.array([0, 0, 1, 1]), np.array([4, 3, 2, 1]))[1:]) == 0.0
    assert auc(*roc_curve(np.array([0, 1, 0, 1]), np.ones(4))[1:]) == 0.5


def test_roc_undefined_when_a_class_is_absent():
    _, fpr, tpr = roc_curve(np.zeros(4, bool), np.arange(4.0))
    assert np.isnan(tpr).all() and math.isnan(auc(fpr, tpr))
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    y = np.array([0, 1, 0, 1])                                         # class 2 absent
    curves, aucs = roc_auc_ovr(y, probs)
    assert len(curves) == 3 and aucs[0] == 1.0 and aucs[1] == 1.0 and math.isnan(aucs[2])
    rep = classification_report(y, probs, ["a", "b", "c"], include_roc=True)
    assert rep["classes"][2]["auc"] is None and rep["macro"]["auc"] == 1.0
    assert rep["classes"][2]["support"] == 0 and rep["classes"][2]["recall"] == 0.0
    json.dumps(rep, allow_nan=False)                                   # no NaN leaks into JSON
    assert rep["roc"][2]["tpr"][0] is None and rep["roc"][0]["thresholds"][0] is None


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(2, 5), st.integers(0, 2 ** 31 - 1), st.sampled_from([1, 2, 10, None]))
def test_ovr_auc_equals_pairwise_mann_whitney(n, k, seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    probs = rng.random((n, k))
    if levels is not None:                                             # coarse scores: many ties
        probs = np.floor(probs * levels) / levels
    curves, aucs = roc_auc_ovr(y, probs)
    for c in range(k):
        expected = pairwise_auc(y == c, probs[:, c])
        if math.isnan(expected):
            assert math.isnan(aucs[c])
        else:
            assert aucs[c] == pytest.approx(expected, abs=1e-12)
        thr, fpr, tpr = curves[c]
        assert np.all(np.diff(thr) < 0) and np.all(np.diff(fpr[~np.isnan(fpr)]) >= 0)
        assert np.all(np.diff(tpr[~np.isnan(tpr)]) >= 0)
        assert thr.size == np.unique(probs[:, c]).size + 1


def test_classification_report_and_text():
    probs = np.eye(3)[Y_PRED] * 0.8 + 0.1
    rep = classification_report(Y_TRUE, probs, ["cat", "dog", "bird"])
    assert rep["n"] == 10 and rep["accuracy"] == 0.7
    assert rep["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert [c["name"] for c in rep["classes"]] == ["cat", "dog", "bird"]
    assert rep["classes"][1]["specificity"] == pytest.approx(7 / 8)
    assert rep["macro"]["precision"] == pytest.approx((3 / 4 + 1 / 2 + 3 / 4) / 3)
    assert rep["macro"]["specificity"] == pytest.approx((5 / 6 + 7 / 8 + 5 / 6) / 3)
    _, aucs = roc_auc_ovr(Y_TRUE, probs)
    assert rep["macro"]["auc"] == pytest.approx(aucs.mean())
    assert "roc" not in rep
    assert json.loads(json.dumps(rep)) == rep
    text = format_report(rep)
    assert "accuracy 0.7000 on 10 samples" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
    assert lines[header + 1].split() == ["cat", "dog", "bird"]
    assert lines[header + 2].split() == ["cat", "3", "1", "0"]
    assert lines[header + 4].split() == ["bird", "1", "0", "3"]


def test_classification_report_errors():
    with pytest.raises(ValueError, match="2 class names for 3"):
        classification_report(Y_TRUE, np.ones((10, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="probs must be"):
        classification_report(Y_TRUE, np.ones((9, 3)))
    with pytest.raises(ValueError, match="labels must be in"):
        classification_report(Y_TRUE, np.ones((10, 2)))

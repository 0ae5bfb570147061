"""metrics files hold the headline; the details files hold the rest."""

from audioclf.headline import cv_headline, eval_headline, quantize_headline


def test_eval_headline_keeps_the_headline_keys_in_order():
    scores = {"accuracy": 0.9, "balanced_accuracy": 0.9, "precision_macro": 0.8, "recall_macro": 0.7}
    scores |= {"f1_macro": 0.75, "iou_macro": 0.6, "f1_weighted": 0.74, "top5_accuracy": 0.99, "n": 40}
    head = eval_headline(scores)
    assert list(head) == ["accuracy", "precision_macro", "recall_macro", "f1_macro", "iou_macro", "top5_accuracy", "n"]


def test_quantize_headline_is_the_deployed_variant_only():
    report = {
        "fp32": {"size_mb": 1.3, "f1_macro": 0.9, "latency_ms_b1": 2.0, "speedup_vs_torch_b1": 1.5, "max_abs_diff": 0},
        "int8_static": {"size_mb": 0.4, "f1_macro": 0.89, "latency_ms_b1": 1.5, "speedup_vs_torch_b1": 2.0},
        "deployed": "int8_static",
        "torch_latency_ms": {"b1": 3.0},
    }
    assert quantize_headline(report) == {
        "deployed": {
            "variant": "int8_static", "size_mb": 0.4, "f1_macro": 0.89, "latency_ms_b1": 1.5, "speedup_vs_torch_b1": 2.0
        }
    }  # fmt: skip


def test_cv_headline_drops_folds_per_class_and_n():
    summary = {
        "mean": {"accuracy": 0.9, "f1_weighted": 0.8, "f1_macro": 0.85, "n": 400.0},
        "std": {"accuracy": 0.01, "f1_weighted": 0.02, "f1_macro": 0.02, "n": 0.0},
        "n_folds": 5,
        "folds": {"1": {}},
        "per_class": {},
    }
    assert cv_headline(summary) == {
        "mean": {"accuracy": 0.9, "f1_macro": 0.85},
        "std": {"accuracy": 0.01, "f1_macro": 0.02},
        "n_folds": 5,
    }

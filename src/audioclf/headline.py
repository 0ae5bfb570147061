"""What goes in a `metrics:` file and what goes in its details file.

`dvc exp show` prints one column per key of every declared metrics file, so those files hold only
the figures a reader compares between runs (the headline). Everything else a stage measures (the
other averages, every ONNX variant with its parity figures, each CV fold) is written next to it
under `metrics/details/`, a plain JSON output that DVC tracks but does not show as columns. The
regression gate reads both (metrics/tolerances.yaml).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DETAILS_DIR = Path("details")  # under the metrics folder: metrics/details/{eval,quantize,cv}.json
# metrics/eval.json {"test": {...}}; `top3_accuracy` follows evaluate.top_k
EVAL_HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "iou_macro", "top3_accuracy", "n")
# metrics/quantize.json {"deployed": {"variant", ...}}: the variant that became models/model.onnx
DEPLOYED_HEADLINE = ("size_mb", "f1_macro", "latency_ms_b1", "speedup_vs_torch_b1")
_TOPK = re.compile(r"top\d+_accuracy")


def _is_headline_eval_key(key: str) -> bool:
    return key in EVAL_HEADLINE or bool(_TOPK.fullmatch(key))


def eval_headline(scores: dict[str, Any]) -> dict[str, Any]:
    """The headline subset of `metrics.classification_report`'s scores, in their order."""
    return {k: v for k, v in scores.items() if _is_headline_eval_key(k)}


def quantize_headline(report: dict[str, Any]) -> dict[str, Any]:
    """`report` is the full variant table (metrics/details/quantize.json) with `deployed`."""
    variant = report["deployed"]
    return {"deployed": {"variant": variant, **{k: report[variant][k] for k in DEPLOYED_HEADLINE}}}


def cv_headline(summary: dict[str, Any]) -> dict[str, Any]:
    """Mean and std over the folds of the headline metrics (not the test-set size `n`)."""
    keep = [k for k in summary["mean"] if _is_headline_eval_key(k) and k != "n"]
    return {
        "mean": {k: summary["mean"][k] for k in keep},
        "std": {k: summary["std"][k] for k in keep},
        "n_folds": summary["n_folds"],
    }

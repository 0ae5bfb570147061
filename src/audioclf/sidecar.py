"""`models/model.json`: the typed description of a trained model (torch-free), written by the
train stage next to `model.pt` and read by evaluate, quantize and anything that reports on a model.

It holds the architecture and its params dataclass whole (nanoGPT-style: enough to rebuild the
network), the classes, the input shape, the exact feature params, the clip format and the
training-set normalisation. `format` says which layout wrote it; files without one (format 1)
load when their fields still validate, otherwise they fail with one line saying to retrain.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.config import FeaturesConfig, build_block, build_model_params, to_dict
from audioclf.errors import AudioclfError, brief
from audioclf.fileio import read_json

WEIGHTS_NAME = "model.pt"
SIDECAR_NAME = "model.json"
# Bump when the layout changes; readers accept 1 (no `format` key) .. MODEL_FORMAT.
MODEL_FORMAT = 2
RETRAIN = "retrain (dvc repro -f train) or restore both files from the same run"


@dataclass(frozen=True)
class ModelSidecar:
    architecture: str
    model_params: Any  # the architecture's params dataclass (`audioclf.models`)
    classes: list[str]  # order = class ids = output logits
    input_shape: list[int]  # (channels, freq, frames) of the features
    normalization: dict[str, Any]  # mean, std: (channels, freq) fitted on the training rows; fitted_on
    features: FeaturesConfig  # `feature_params` in the file: the graph recomputes them exactly
    sample_rate: int
    duration_s: float
    n_samples: int
    train: dict[str, Any] = field(default_factory=dict)  # the rest of the resolved train block (the recipe)
    best_epoch: int = 0
    best_val_f1_macro: float = 0.0
    device: str = "cpu"
    processes: int = 1
    format: int = MODEL_FORMAT

    def to_json(self) -> str:
        out = {"format": self.format}
        for f in dataclasses.fields(self):
            if f.name != "format":
                value = getattr(self, f.name)
                key = "feature_params" if f.name == "features" else f.name
                out[key] = to_dict(value) if dataclasses.is_dataclass(value) else value
        return json.dumps(out, indent=2) + "\n"


_REQUIRED = (
    "architecture", "model_params", "classes", "input_shape", "normalization",
    "feature_params", "sample_rate", "duration_s", "n_samples",
)  # fmt: skip


def _check_shapes(meta: dict[str, Any], path: Path) -> None:
    classes, shape, norm = meta["classes"], meta["input_shape"], meta["normalization"]
    ok = (
        isinstance(classes, list)
        and len(classes) >= 1
        and isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(n, int) and n > 0 for n in shape)
        and isinstance(norm, dict)
        and isinstance(meta["model_params"], dict)
    )
    if not ok:
        raise AudioclfError(f"{path}: classes, input_shape, normalization or model_params malformed; {RETRAIN}")
    for key in ("mean", "std"):
        stats = np.asarray(norm.get(key, []), dtype=object)
        if stats.shape != tuple(shape[:2]):
            raise AudioclfError(
                f"{path}: normalization {key} has shape {list(stats.shape)} but input_shape {shape} needs "
                f"{shape[:2]}; {RETRAIN}"
            )


def _typed(meta: dict[str, Any], path: Path) -> ModelSidecar:
    """The checked fields as the typed sidecar; the params through the same validation as params.yaml."""
    try:
        params = build_model_params(meta["architecture"], meta["model_params"], "model_params", "architecture")
        features = build_block(FeaturesConfig, meta["feature_params"], "feature_params")
    except AudioclfError as exc:
        raise AudioclfError(f"{path}: {brief(exc).removeprefix('params: ')}; {RETRAIN}") from None
    known = {f.name for f in dataclasses.fields(ModelSidecar)} - {"model_params", "features"}
    rest = {k: v for k, v in meta.items() if k in known}
    return ModelSidecar(
        **{**rest, "model_params": params, "features": features, "classes": [str(c) for c in meta["classes"]]}
    )


def read_sidecar(path: Path) -> ModelSidecar:
    """model.json, with the keys, types and format checked: one line naming the problem and the fix."""
    try:
        meta = read_json(path)
    except (ValueError, OSError) as exc:
        raise AudioclfError(f"{path}: not a readable JSON sidecar ({brief(exc)}); {RETRAIN}") from exc
    if not isinstance(meta, dict):
        raise AudioclfError(f"{path}: expected a JSON object; {RETRAIN}")
    version = meta.get("format", 1)
    if not isinstance(version, int) or not 1 <= version <= MODEL_FORMAT:
        raise AudioclfError(
            f"{path}: format {brief(repr(version))} is not one this version reads (1..{MODEL_FORMAT}); "
            f"re-run train (dvc repro -f train) with this version"
        )
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise AudioclfError(
            f"{path}: lacks {', '.join(missing)}; is it a model.json written by the train stage? {RETRAIN}"
        )
    _check_shapes(meta, path)
    return _typed({**meta, "format": MODEL_FORMAT}, path)

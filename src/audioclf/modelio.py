"""Saving and loading a trained model: `model.pt` (state_dict only) + `model.json` (everything
needed to rebuild it). Loading checks the weights against the sidecar before use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_path, read_json, write_json
from audioclf.models import Classifier, build_model

WEIGHTS_NAME = "model.pt"
SIDECAR_NAME = "model.json"


def save_model(model: Classifier, sidecar: dict[str, Any], models_dir: Path) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(models_dir / WEIGHTS_NAME) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    write_json(models_dir / SIDECAR_NAME, sidecar)


def load_model(models_dir: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the architecture from model.json and load model.pt (weights_only=True)."""
    sidecar_path, weights_path = models_dir / SIDECAR_NAME, models_dir / WEIGHTS_NAME
    for path in (sidecar_path, weights_path):
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run the train stage first (dvc repro train)")
    meta = read_json(sidecar_path)
    mean = torch.tensor(np.asarray(meta["normalization"]["mean"], dtype=np.float32))
    std = torch.tensor(np.asarray(meta["normalization"]["std"], dtype=np.float32))
    model = build_model(
        meta["architecture"], meta["input_shape"][0], len(meta["classes"]), mean, std, **meta["model_params"]
    )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise AudioclfError(
            f"{weights_path}: does not match {sidecar_path} ({first}); retrain with dvc repro train"
        ) from exc
    return model.eval(), meta


def check_features_match(meta: dict[str, Any], features_meta: dict[str, Any], where: Path) -> None:
    """The model must have been trained on features of this shape, kind and class list."""
    if list(meta["classes"]) != list(features_meta["classes"]):
        raise AudioclfError(
            f"{where}: the model's classes differ from data/features/meta.json's; retrain (dvc repro train)"
        )
    if list(meta["input_shape"]) != list(features_meta["shape"][1:]):
        raise AudioclfError(
            f"{where}: the model expects input {meta['input_shape']} but the features are "
            f"{features_meta['shape'][1:]}; retrain (dvc repro train)"
        )

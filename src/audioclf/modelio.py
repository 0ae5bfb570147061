"""Saving and loading a trained model: `model.pt` (state_dict only) + `model.json` (the typed
`sidecar.ModelSidecar`: everything needed to rebuild it). Loading checks the weights against the
sidecar before use: readable with `weights_only=True`, the sidecar's architecture, class count and
input shape."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from audioclf.checkpoint import is_checkpoint, save_torch
from audioclf.errors import AudioclfError, brief
from audioclf.fileio import atomic_paths
from audioclf.network import Classifier, build_model
from audioclf.sidecar import RETRAIN, SIDECAR_NAME, WEIGHTS_NAME, ModelSidecar, read_sidecar


def save_model(model: Classifier, sidecar: ModelSidecar, models_dir: Path) -> None:
    """Both files are replaced together (the sidecar last), so a reader never pairs new weights
    with an old sidecar."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with atomic_paths(models_dir / WEIGHTS_NAME, models_dir / SIDECAR_NAME) as (weights, side):
        save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
        side.write_text(sidecar.to_json())


def _load_state(weights_path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, AttributeError) as exc:
        # weights_only refuses pickled code (a whole pickled model, anything not plain tensors)
        raise AudioclfError(
            f"{weights_path}: not a readable weights file with weights_only=True ({brief(exc)}); {RETRAIN}"
        ) from exc
    if is_checkpoint(state):
        raise AudioclfError(
            f"{weights_path}: is a training checkpoint (like models/checkpoints/last.pt), not the weights the "
            "train stage ships; rerun the train stage to write model.pt"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AudioclfError(f"{weights_path}: not a state_dict of tensors; {RETRAIN}")
    return state


def check_state(model: Classifier, state: dict[str, torch.Tensor], meta: ModelSidecar, where: Path) -> None:
    """Name the first way `state` does not fit the architecture the sidecar describes."""
    expected = model.state_dict()
    arch = f"a {meta.architecture} for {len(meta.classes)} classes and input {meta.input_shape}"
    unexpected = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state]
    if unexpected or missing:
        example = f"unexpected {unexpected[0]!r}" if unexpected else f"missing {missing[0]!r}"
        raise AudioclfError(
            f"{where}: its weights are not those of {arch}, as {SIDECAR_NAME} says ({example}); another "
            f"architecture's weights? {RETRAIN}"
        )
    # the network's own layers first: a wrong normalisation shape follows from them
    for key, tensor in sorted(expected.items(), key=lambda kv: not kv[0].startswith("net.")):
        if tuple(state[key].shape) == tuple(tensor.shape):
            continue
        if key == next(reversed([k for k in expected if k.endswith(".weight")])):
            raise AudioclfError(
                f"{where}: its output layer has {state[key].shape[0]} classes but {SIDECAR_NAME} lists "
                f"{len(meta.classes)}; the two files come from different runs, {RETRAIN}"
            )
        raise AudioclfError(
            f"{where}: {key} is {list(state[key].shape)} but {arch} needs {list(tensor.shape)}; "
            f"the two files come from different runs, {RETRAIN}"
        )


def load_model(models_dir: Path) -> tuple[Classifier, ModelSidecar]:
    """Rebuild the architecture from model.json and load model.pt (weights_only=True), checked
    against the sidecar's architecture, classes and input shape before use."""
    sidecar_path, weights_path = models_dir / SIDECAR_NAME, models_dir / WEIGHTS_NAME
    for path in (sidecar_path, weights_path):
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run the train stage first (dvc repro train)")
    meta = read_sidecar(sidecar_path)
    mean = torch.tensor(np.asarray(meta.normalization["mean"], dtype=np.float32))
    std = torch.tensor(np.asarray(meta.normalization["std"], dtype=np.float32))
    try:
        model = build_model(meta.architecture, meta.input_shape[0], len(meta.classes), mean, std, meta.model_params)
    except (TypeError, ValueError) as exc:
        raise AudioclfError(f"{sidecar_path}: model_params do not build the model ({brief(exc)}); {RETRAIN}") from exc
    state = _load_state(weights_path)
    check_state(model, state, meta, weights_path)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *meta.input_shape))
    if tuple(out.shape) != (1, len(meta.classes)):
        raise AudioclfError(
            f"{weights_path}: gives {tuple(out.shape)[1:]} outputs for input {meta.input_shape}, not "
            f"{len(meta.classes)} class scores; {RETRAIN}"
        )
    return model, meta


def check_features_match(meta: ModelSidecar, features_meta: dict, where: Path) -> None:
    """The model must have been trained on features of this shape, kind and class list."""
    if list(meta.classes) != list(features_meta["classes"]):
        raise AudioclfError(
            f"{where}: the model's classes differ from data/features/meta.json's; retrain (dvc repro train)"
        )
    if list(meta.input_shape) != list(features_meta["shape"][1:]):
        raise AudioclfError(
            f"{where}: the model expects input {meta.input_shape} but the features are "
            f"{features_meta['shape'][1:]}; retrain (dvc repro train)"
        )

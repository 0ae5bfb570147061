"""Saving and loading a trained model: `model.pt` (state_dict only) + `model.json` (everything
needed to rebuild it). Loading checks the weights against the sidecar before use: readable with
`weights_only=True`, the sidecar's architecture, class count and input shape."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_paths, read_json
from audioclf.models import MODEL_BUILDERS, Classifier, build_model

WEIGHTS_NAME = "model.pt"
SIDECAR_NAME = "model.json"
SIDECAR_KEYS = ("architecture", "model_params", "classes", "input_shape", "normalization")
RETRAIN = "retrain (dvc repro -f train) or restore both files from the same run"


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through an open file: given a path, torch names the archive inside after the
    (random temp) file name, so equal weights would give different bytes and DVC hashes."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)


def save_model(model: Classifier, sidecar: dict[str, Any], models_dir: Path) -> None:
    """Both files are replaced together (the sidecar last), so a reader never pairs new weights
    with an old sidecar."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with atomic_paths(models_dir / WEIGHTS_NAME, models_dir / SIDECAR_NAME) as (weights, side):
        save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
        side.write_text(json.dumps(sidecar, indent=2) + "\n")


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def read_sidecar(path: Path) -> dict[str, Any]:
    """model.json, with the keys and types `load_model` relies on checked."""
    try:
        meta = read_json(path)
    except (ValueError, OSError) as exc:
        raise AudioclfError(f"{path}: not a readable JSON sidecar ({_first_line(exc)}); {RETRAIN}") from exc
    if not isinstance(meta, dict):
        raise AudioclfError(f"{path}: expected a JSON object; {RETRAIN}")
    missing = [k for k in SIDECAR_KEYS if k not in meta]
    if missing:
        raise AudioclfError(
            f"{path}: lacks {', '.join(missing)}; is it a model.json written by the train stage? {RETRAIN}"
        )
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
    return meta


def _load_state(weights_path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, AttributeError) as exc:
        # weights_only refuses pickled code (a whole pickled model, anything not plain tensors)
        raise AudioclfError(
            f"{weights_path}: not a readable weights file with weights_only=True ({_first_line(exc)}); {RETRAIN}"
        ) from exc
    if isinstance(state, dict) and {"model", "optimizer", "fingerprint"} <= set(state):
        raise AudioclfError(
            f"{weights_path}: is a training checkpoint (like models/checkpoints/last.pt), not the weights the "
            "train stage ships; rerun the train stage to write model.pt"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AudioclfError(f"{weights_path}: not a state_dict of tensors; {RETRAIN}")
    return state


def check_state(model: Classifier, state: dict[str, torch.Tensor], meta: dict[str, Any], where: Path) -> None:
    """Name the first way `state` does not fit the architecture the sidecar describes."""
    expected = model.state_dict()
    arch = f"a {meta['architecture']} for {len(meta['classes'])} classes and input {meta['input_shape']}"
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
                f"{len(meta['classes'])}; the two files come from different runs, {RETRAIN}"
            )
        raise AudioclfError(
            f"{where}: {key} is {list(state[key].shape)} but {arch} needs {list(tensor.shape)}; "
            f"the two files come from different runs, {RETRAIN}"
        )


def load_model(models_dir: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the architecture from model.json and load model.pt (weights_only=True), checked
    against the sidecar's architecture, classes and input shape before use."""
    sidecar_path, weights_path = models_dir / SIDECAR_NAME, models_dir / WEIGHTS_NAME
    for path in (sidecar_path, weights_path):
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run the train stage first (dvc repro train)")
    meta = read_sidecar(sidecar_path)
    mean = torch.tensor(np.asarray(meta["normalization"]["mean"], dtype=np.float32))
    std = torch.tensor(np.asarray(meta["normalization"]["std"], dtype=np.float32))
    if meta["architecture"] not in MODEL_BUILDERS:
        raise AudioclfError(
            f"{sidecar_path}: architecture {meta['architecture']!r} is not one this version knows "
            f"({', '.join(MODEL_BUILDERS)}); {RETRAIN}"
        )
    try:
        model = build_model(
            meta["architecture"], meta["input_shape"][0], len(meta["classes"]), mean, std, **meta["model_params"]
        )
    except (TypeError, ValueError) as exc:
        raise AudioclfError(
            f"{sidecar_path}: model_params do not build the model ({_first_line(exc)}); {RETRAIN}"
        ) from exc
    state = _load_state(weights_path)
    check_state(model, state, meta, weights_path)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *meta["input_shape"]))
    if tuple(out.shape) != (1, len(meta["classes"])):
        raise AudioclfError(
            f"{weights_path}: gives {tuple(out.shape)[1:]} outputs for input {meta['input_shape']}, not "
            f"{len(meta['classes'])} class scores; {RETRAIN}"
        )
    return model, meta


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

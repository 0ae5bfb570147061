"""Torch files: a deterministic `torch.save`, and the training checkpoint's layout (its keys are
defined here once: the trainer writes and resumes them, `modelio` recognises a checkpoint by them)."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audioclf.fileio import atomic_path

CHECKPOINT_NAME = "last.pt"
# Bump when the checkpoint's layout changes, so a checkpoint written by older code is not resumed.
CHECKPOINT_FORMAT = 3


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through an open file: given a path, torch names the archive inside after the
    (random temp) file name, so equal weights would give different bytes and DVC hashes."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)


@dataclass
class Checkpoint:
    """Everything a resumed run needs after `epoch`. No RNG states: the trainer's per-epoch
    generators and the sampler rebuild them from the epoch number exactly."""

    fingerprint: str  # the run's identity (params, data, layout): a foreign checkpoint is not resumed
    epoch: int  # the last completed epoch
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_f1: float
    best_val_accuracy: float
    bad_epochs: int
    history: list[dict[str, float]]


CHECKPOINT_KEYS = tuple(f.name for f in dataclasses.fields(Checkpoint))


def is_checkpoint(obj: object) -> bool:
    return isinstance(obj, dict) and set(CHECKPOINT_KEYS) <= set(obj)


def save_checkpoint(ckpt: Checkpoint, path: Path) -> None:
    with atomic_path(path) as tmp:  # shallow: the tensors are saved as they are, not copied
        save_torch({key: getattr(ckpt, key) for key in CHECKPOINT_KEYS}, tmp)


def load_checkpoint(path: Path, fingerprint: str, device: torch.device | str = "cpu") -> Checkpoint | None:
    """The checkpoint at `path` when it belongs to the run `fingerprint`; None when absent,
    torn, foreign or of another layout (the run then starts afresh)."""
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, KeyError, OSError, pickle.UnpicklingError):
        return None
    if not is_checkpoint(raw) or raw["fingerprint"] != fingerprint:
        return None
    return Checkpoint(**{key: raw[key] for key in CHECKPOINT_KEYS})

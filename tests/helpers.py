"""Helpers shared by the tests (importable as `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Small enough that every stage runs in seconds, large enough that each split has every class.
TINY_PARAMS: dict = {
    "data": {"classes": ["whistle", "buzz", "clicks"], "synthetic_clips_per_class": 10},
    "train": {"channels": [4, 8], "epochs": 3, "batch_size": 8, "patience": 3},
    "features": {"n_mels": 32},
    "quantize": {"variants": ["fp32", "int8_static"], "calibration_samples": 8, "latency_runs": 2},
    "runtime": {"workers": 1},
}


def write_params(path: Path, overrides: dict | None = None) -> Path:
    """Write TINY_PARAMS merged with `overrides` (one level deep per block)."""
    params = {block: dict(values) for block, values in TINY_PARAMS.items()}
    for block, values in (overrides or {}).items():
        params.setdefault(block, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path

"""The deploy contract (torch-free): what the quantize stage ships and `predict` reads.

`model.onnx` takes the raw waveform (batch, n_samples) named `waveform` and returns `logits`; its
graph metadata repeats the classes, rate and clip length under `ONNX_*_KEY`. The sidecar
`model.onnx.json` is `DeploySidecar`: the classes, the clip format, the tensor names, the variant
and a `format` version. Both sides open the graph with `ort_session`, so the quantize stage
measures the model as it will be served.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioclf.errors import AudioclfError, brief

ONNX_NAME = "model.onnx"
INPUT_NAME = "waveform"
OUTPUT_NAME = "logits"
# graph metadata the quantize stage writes into model.onnx (export.deploy_copy), checked against the sidecar
ONNX_CLASSES_KEY = "audioclf.classes"
ONNX_SAMPLE_RATE_KEY = "audioclf.sample_rate"
ONNX_N_SAMPLES_KEY = "audioclf.n_samples"
# Bump when the sidecar's layout changes; readers accept 1 (no `format` key) .. DEPLOY_FORMAT.
DEPLOY_FORMAT = 2
REBUILD = "rebuild it with dvc repro quantize"


def sidecar_path(model: Path) -> Path:
    """`model.onnx` → `model.onnx.json`."""
    return model.with_name(model.name + ".json")


@dataclass(frozen=True)
class DeploySidecar:
    classes: list[str]  # order = the graph's logits
    sample_rate: int
    n_samples: int  # the graph's clip length
    duration_s: float | None = None
    input: str = INPUT_NAME
    output: str = OUTPUT_NAME
    variant: str = "unknown"  # fp32 | fp16 | int8_dynamic | int8_static
    architecture: str | None = None
    feature_params: dict[str, Any] = field(default_factory=dict)
    test_f1_macro: float | None = None
    # probabilities are softmax(logits / temperature): fitted on the validation split by the
    # evaluate stage (1.0 = uncalibrated, what a sidecar without the key means)
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)  # the fit's record: ECE/NLL before, after
    format: int = DEPLOY_FORMAT

    def to_json(self) -> str:
        out = dataclasses.asdict(self)
        return json.dumps({"format": out.pop("format"), **out}, indent=2) + "\n"


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _checked(meta: dict[str, Any], path: Path) -> None:
    version = meta.get("format", 1)
    if not isinstance(version, int) or not 1 <= version <= DEPLOY_FORMAT:
        raise AudioclfError(
            f"{path}: format {brief(repr(version))} is not one this version reads (1..{DEPLOY_FORMAT}); "
            "re-run quantize (dvc repro -f quantize) with this version"
        )
    checks = {
        "classes": isinstance(meta.get("classes"), list) and len(meta["classes"]) >= 1,
        "sample_rate": isinstance(meta.get("sample_rate"), int) and meta["sample_rate"] > 0,
        "n_samples": isinstance(meta.get("n_samples"), int) and meta["n_samples"] > 0,
        "input": isinstance(meta.get("input"), str),
        "output": isinstance(meta.get("output"), str),
        "temperature": _positive(meta.get("temperature", 1.0)),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise AudioclfError(f"{path}: missing or invalid {', '.join(bad)}; {REBUILD}")
    duration = meta.get("duration_s")
    if duration is not None and (
        not isinstance(duration, int | float) or round(duration * meta["sample_rate"]) != meta["n_samples"]
    ):
        raise AudioclfError(
            f"{path}: duration_s {duration} × sample_rate {meta['sample_rate']} ≠ n_samples {meta['n_samples']}; "
            f"{REBUILD}"
        )


def read_deploy_sidecar(path: Path) -> DeploySidecar:
    """The sidecar at `path`, checked: one line naming the file and the fix otherwise."""
    if not path.is_file():
        raise AudioclfError(f"{path}: sidecar not found; ship the model's .json sidecar (the quantize stage writes it)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AudioclfError(f"{path}: not a readable JSON sidecar ({brief(exc)}); copy it again from models/") from exc
    if not isinstance(meta, dict):
        raise AudioclfError(f"{path}: expected a JSON object; copy the sidecar again from models/")
    _checked(meta, path)
    known = {f.name for f in dataclasses.fields(DeploySidecar)}
    fields = {k: v for k, v in meta.items() if k in known}
    return DeploySidecar(**{**fields, "classes": [str(c) for c in meta["classes"]], "format": DEPLOY_FORMAT})


def ort_session(path: Path, threads: int) -> Any:
    """A CPU onnxruntime session; the quantize stage and the bench measure with the same one.
    All graph optimisations (constant folding, Conv+activation fusion, NCHWc conv layouts)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0 = onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1  # the graph is a chain: parallelism lives inside each op
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

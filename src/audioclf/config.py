"""Typed, validated view of `params.yaml`, loaded once per stage.

One frozen dataclass per params block. The loader rejects unknown keys and wrong types, and each
`__post_init__` checks ranges, so a bad value stops the run with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import reprlib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from audioclf.errors import AudioclfError, brief

# The corpora (one class each in `sources/`; a test ties this to that registry) and the feature
# kinds (one entry each in `features.FEATURE_KINDS`; tested likewise). The models are not listed
# here: `audioclf.models` is their registry, read by `TrainConfig` without importing torch.
DatasetName = Literal["synthetic", "esc50", "urbansound8k", "speechcommands", "fsdd", "folder", "csv"]
FeatureKind = Literal["logmel", "mfcc", "stft_complex", "spectrogram"]
DATASETS: tuple[str, ...] = typing.get_args(DatasetName)
FEATURE_KINDS: tuple[str, ...] = typing.get_args(FeatureKind)
VARIANTS = ("fp32", "fp16", "int8_dynamic", "int8_static")
# metrics/eval.json {"test": {...}} keys (DESIGN.md); top3 follows evaluate.top_k's default
DESIGN_EVAL_KEYS = (
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "iou_macro", "f1_weighted", "top3_accuracy", "n",
)  # fmt: skip


class ParamError(AudioclfError):
    """A bad params value: `key` and what is wrong. A nested block (a model's params) raises it
    with its own field name; the loader re-raises it with the full dotted key."""

    def __init__(self, key: str, msg: str) -> None:
        super().__init__(f"params: `{brief(key)}` {msg}")
        self.key, self.msg = key, msg


def fail(key: str, msg: str) -> typing.NoReturn:
    raise ParamError(key, msg)


# bounded repr of a user value: a YAML alias bomb is tiny on disk but its full repr is not
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 80, 80


def _show(value: Any) -> str:
    return brief(_REPR.repr(value))


@dataclass(frozen=True)
class DataConfig:
    dataset: DatasetName = "synthetic"
    source: str | None = None  # URL or path overriding the corpus's default location
    version: str | None = None
    classes: list[str | int] | None = None  # None = every class of the corpus; ints become strings
    folds: list[int] | None = None  # None = every fold
    max_per_class: int | None = None
    max_total: int | None = None
    sample_rate: int | Literal["auto"] = "auto"
    duration_s: float | Literal["auto"] = "auto"
    synthetic_clips_per_class: int = 200  # built-in set: spread evenly over its 5 folds
    synthetic_seed: int = 0
    group_regex: str | None = None  # folder: regex on the file name; its first group (or the match) is the group
    csv_path_column: str = "path"  # csv: path (relative to the CSV) or URL of each clip
    csv_label_column: str = "label"
    csv_fold_column: str | None = None  # csv: optional integer fold column
    csv_group_column: str | None = None  # csv: optional group (speaker / source) column
    timeout_s: float = 30.0  # per HTTP request: connecting, and each read of the body
    retries: int = 4  # extra attempts after a 5xx, a dropped connection or a timeout
    # size caps (MB) for one audio file / archive member and for one metadata file; auto = preset
    max_file_mb: float | Literal["auto"] = "auto"
    max_metadata_mb: float | Literal["auto"] = "auto"
    on_bad_row: Literal["skip", "fail"] = "skip"  # a row whose file is missing, refused or unusable

    def __post_init__(self) -> None:
        if self.source is not None:
            if not self.source.strip():
                fail("data.source", "is empty; give a URL (http, https, file://) or a path, or null for the default")
            try:
                urllib.parse.urlsplit(self.source)
            except ValueError as exc:
                fail("data.source", f"{_show(self.source)} is not a valid URL ({brief(exc)}); fix it")
        for key in ("max_file_mb", "max_metadata_mb"):
            value = getattr(self, key)
            if value != "auto" and not 0 < value <= 1_000_000:
                fail(f"data.{key}", f"must be in (0, 1e6] MB or auto, got {value}")
        if self.classes is not None:
            # YAML reads `[0, 1]` as ints; labels are strings (FSDD digits, numeric CSV labels)
            object.__setattr__(self, "classes", [str(c) for c in self.classes])
        if self.group_regex is not None:
            try:
                re.compile(self.group_regex)
            except re.error as exc:
                fail("data.group_regex", f"is not a valid regular expression ({exc}); fix it or set null")
        for key in ("csv_path_column", "csv_label_column", "csv_fold_column", "csv_group_column"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                fail(f"data.{key}", "must be a column name, not empty")
        if not 0 < self.timeout_s <= 3600:
            fail("data.timeout_s", f"must be in (0, 3600] seconds, got {self.timeout_s}")
        if not 0 <= self.retries <= 20:
            fail("data.retries", f"must be in 0..20, got {self.retries}")
        for key in ("max_per_class", "max_total"):
            value = getattr(self, key)
            if value is not None and value < 1:
                fail(f"data.{key}", f"must be >= 1 or null, got {value}")
        if isinstance(self.sample_rate, int) and not 1000 <= self.sample_rate <= 192_000:
            fail("data.sample_rate", f"must be in 1000..192000 Hz or auto, got {self.sample_rate}")
        if isinstance(self.duration_s, float) and not 0.05 <= self.duration_s <= 600:
            fail("data.duration_s", f"must be in 0.05..600 s or auto, got {self.duration_s}")
        if self.synthetic_clips_per_class < 5:
            fail("data.synthetic_clips_per_class", "must be >= 5 (one clip per fold at least)")
        if self.classes is not None and len(self.classes) < 2:
            fail("data.classes", "needs at least 2 classes, or null for all")


@dataclass(frozen=True)
class SplitConfig:
    strategy: Literal["folds", "stratified", "group"] = "folds"
    test_fold: int | Literal["auto"] = "auto"  # auto: the corpus preset's test fold (synthetic: 5)
    val_fold: int | Literal["auto"] = "auto"  # auto: its validation fold (synthetic: 4)
    val_frac: float = 0.2
    test_frac: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy == "folds" and self.test_fold == self.val_fold != "auto":
            fail("split.val_fold", f"must differ from split.test_fold ({self.test_fold})")
        for key in ("val_frac", "test_frac"):
            if not 0.0 < getattr(self, key) < 1.0:
                fail(f"split.{key}", f"must be in (0, 1), got {getattr(self, key)}")
        if self.val_frac + self.test_frac >= 1.0:
            fail("split.val_frac", "plus split.test_frac must leave rows for training (< 1)")


@dataclass(frozen=True)
class FeaturesConfig:
    kind: FeatureKind = "logmel"
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 40
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float | None = 80.0
    power: float = 2.0
    dtype: Literal["float16", "float32"] = "float16"
    # undecodable audio: skip it and list it in meta.json (failing past max_skipped_frac), or stop
    on_bad_audio: Literal["skip", "fail"] = "skip"
    max_skipped_frac: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_skipped_frac <= 1.0:
            fail("features.max_skipped_frac", f"must be in [0, 1], got {self.max_skipped_frac}")
        if self.n_fft < 16:
            fail("features.n_fft", f"must be >= 16, got {self.n_fft}")
        if not 1 <= self.win_length <= self.n_fft:
            fail("features.win_length", f"must be in 1..n_fft ({self.n_fft}), got {self.win_length}")
        if not 1 <= self.hop_length <= self.win_length:
            fail(
                "features.hop_length",
                f"must be in 1..win_length ({self.win_length}), got {self.hop_length}",
            )
        n_freqs = self.n_fft // 2 + 1
        if not 1 <= self.n_mels <= n_freqs:
            fail(
                "features.n_mels",
                f"must be in 1..{n_freqs} (n_fft//2+1 frequency bins), got {self.n_mels}; "
                "raise features.n_fft or lower n_mels",
            )
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            fail("features.n_mfcc", f"must be in 1..n_mels ({self.n_mels}), got {self.n_mfcc}")
        if self.f_min < 0 or (self.f_max is not None and self.f_max <= self.f_min):
            fail("features.f_max", f"must be > f_min ({self.f_min}) or null")
        if self.top_db is not None and self.top_db <= 0:
            fail("features.top_db", f"must be > 0 or null, got {self.top_db}")
        if self.power not in (1.0, 2.0):
            fail("features.power", f"must be 1.0 (magnitude) or 2.0 (power), got {self.power}")


@dataclass(frozen=True)
class AugmentConfig:
    time_shift: float = 0.1  # max roll, as a fraction of the frames
    freq_masks: int = 2
    time_masks: int = 2
    mask_frac: float = 0.1  # max width of one mask, as a fraction of the axis
    mixup_alpha: float = 0.3  # 0 turns mixup off
    gain_db: float = 0.0  # max random gain, +-dB per clip (a shift of every log-mel bin); 0 = off

    def __post_init__(self) -> None:
        if not 0.0 <= self.time_shift < 1.0:
            fail("train.augment.time_shift", f"must be in [0, 1), got {self.time_shift}")
        if not 0.0 <= self.mask_frac < 1.0:
            fail("train.augment.mask_frac", f"must be in [0, 1), got {self.mask_frac}")
        if self.freq_masks < 0 or self.time_masks < 0:
            fail("train.augment.freq_masks", "and time_masks must be >= 0")
        if self.mixup_alpha < 0:
            fail("train.augment.mixup_alpha", f"must be >= 0, got {self.mixup_alpha}")
        if self.gain_db < 0:
            fail("train.augment.gain_db", f"must be >= 0, got {self.gain_db}")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "fastcnn"  # a name in the `audioclf.models` registry
    # one block per architecture, `train.model_params.<name>: {...}`; validated against that
    # model's params dataclass. The chosen model's block (its defaults when absent) is `arch_params`.
    model_params: dict[str, Any] = field(default_factory=dict)
    freeze_epochs: int = 0
    epochs: int = 60
    batch_size: int = 32
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: momentum 0.9, Nesterov
    lr: float = 3e-3
    weight_decay: float = 1e-2
    scheduler: Literal["onecycle", "warmup_linear"] = "onecycle"
    warmup_frac: float = 0.1
    grad_clip: float | None = 5.0
    label_smoothing: float = 0.05
    patience: int = 20
    keep: Literal["best", "last"] = "best"  # last: all `epochs`, final weights (a fixed-length fit)
    include_val: bool = False  # the val rows train too: a final fit once the recipe is chosen
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_weights: bool = False
    min_steps_per_epoch: int = 8  # smaller batches on small sets, so BatchNorm and the schedule get steps
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # CPU bf16 autocast only where torch supports it
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_params", _model_params(self.model, self.model_params))
        if self.epochs < 1:
            fail("train.epochs", f"must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            fail("train.batch_size", f"must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            fail("train.lr", f"must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            fail("train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.warmup_frac < 1.0:
            fail("train.warmup_frac", f"must be in (0, 1), got {self.warmup_frac}")
        if not 0.0 <= self.label_smoothing < 1.0:
            fail("train.label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.patience < 1:
            fail("train.patience", f"must be >= 1, got {self.patience}")
        if self.include_val and self.keep != "last":
            # the best epoch on rows it trained on is the best fit, not the best model
            fail("train.include_val", "true needs train.keep: last (a fixed epoch count); set both")
        if self.min_steps_per_epoch < 1:
            fail("train.min_steps_per_epoch", f"must be >= 1, got {self.min_steps_per_epoch}")
        if self.freeze_epochs < 0:
            fail("train.freeze_epochs", f"must be >= 0, got {self.freeze_epochs}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            fail("train.grad_clip", f"must be > 0 or null, got {self.grad_clip}")

    @property
    def arch_params(self) -> Any:
        """The chosen model's params dataclass: passed whole to its builder, stored in model.json."""
        return self.model_params[self.model]

    def resolved(self) -> dict[str, Any]:
        """The block as training sees it: the chosen model's params only (fingerprint, model.json)."""
        out = to_dict(self)
        out["model_params"] = {self.model: to_dict(self.arch_params)}
        return out


def build_model_params(name: str, raw: Any, key: str, name_key: str = "params: `train.model`") -> Any:
    """`raw` (a mapping, or the params dataclass itself) validated against model `name`'s params
    dataclass; a bad key or value is one line naming `key.<field>`, an unknown model `name_key`."""
    arch = _models().get(name, name_key)
    if isinstance(raw, arch.params):
        return raw
    try:
        return build_block(arch.params, raw, key)
    except ParamError as exc:
        if exc.key.startswith(f"{key}."):
            raise
        raise ParamError(f"{key}.{exc.key}", exc.msg) from None


def _models() -> Any:
    """The torch-free models registry, imported by name on first use: every stage validates the
    whole params file, but only the stages that build or load models depend on the model files
    (dvc.yaml lists `src/audioclf/models` for them alone, so a new model reruns no data stage)."""
    return importlib.import_module("audioclf.models")


def _model_params(model: str, blocks: dict[str, Any]) -> dict[str, Any]:
    """Every block validated by its own model; the chosen model's defaults filled in."""
    models = _models()
    if not isinstance(blocks, dict):
        fail("train.model_params", f"must be a mapping of model name to params, got {_show(blocks)}")
    models.get(model)
    out = {}
    for name, raw in blocks.items():
        if name not in models.architectures():
            fail(f"train.model_params.{name}", f"is not a model; known: {', '.join(sorted(models.architectures()))}")
        out[name] = build_model_params(name, raw, f"train.model_params.{name}")
    if model not in out:
        out[model] = models.get(model).params()
    return out


@dataclass(frozen=True)
class EvaluateConfig:
    top_k: int = 3
    n_mistakes: int = 20

    def __post_init__(self) -> None:
        if self.top_k < 1:
            fail("evaluate.top_k", f"must be >= 1, got {self.top_k}")
        if self.n_mistakes < 0:
            fail("evaluate.n_mistakes", f"must be >= 0, got {self.n_mistakes}")


@dataclass(frozen=True)
class QuantizeConfig:
    # int8_dynamic is built on request only: slower than fp32 on CPUs (docs/deployment.md)
    variants: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8_static"])
    calibration_samples: int = 128
    f1_tolerance: float = 0.02
    deploy: str = "fp32"
    opset: int = 18
    latency_runs: int = 100  # interleaved rounds at batch 1 (batch 32: a quarter)

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            fail("quantize.variants", f"has {unknown}; choose from {', '.join(VARIANTS)}")
        if "fp32" not in self.variants:
            fail("quantize.variants", "must include fp32 (the reference for parity)")
        if self.deploy not in self.variants:
            fail("quantize.deploy", f"is {_show(self.deploy)}; it must be one of quantize.variants {self.variants}")
        if self.calibration_samples < 1:
            fail("quantize.calibration_samples", f"must be >= 1, got {self.calibration_samples}")
        if not 0.0 <= self.f1_tolerance <= 1.0:
            fail("quantize.f1_tolerance", f"must be in [0, 1], got {self.f1_tolerance}")
        if not 17 <= self.opset <= 23:
            fail("quantize.opset", f"must be in 17..23, got {self.opset}")
        if self.latency_runs < 1:
            fail("quantize.latency_runs", f"must be >= 1, got {self.latency_runs}")


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run, never what to compute: not declared as stage params, so it reruns nothing."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int = 0  # 0 = one per core
    threads: int = 0  # 0 = torch's default (the cores)
    nproc: int = 1

    def __post_init__(self) -> None:
        for key in ("workers", "threads"):
            if getattr(self, key) < 0:
                fail(f"runtime.{key}", "must be >= 0 (0 = automatic)")
        if self.nproc < 1:
            fail("runtime.nproc", f"must be >= 1, got {self.nproc}")


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    if isinstance(value, float) and not math.isfinite(value):  # every float field, however declared
        fail(key, f"must be a finite number, got {value}")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_block(tp, value, key)
    if tp is Any or origin is dict:  # checked by the owning dataclass (train.model_params)
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except AudioclfError:
                continue
        fail(key, f"must be {_type_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        fail(key, f"must be one of {_type_name(tp)}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            fail(key, f"must be a {_type_name(tp)}, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        fail(key, f"must be null, got {_show(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new annotation needs a branch here
        raise TypeError(f"unsupported annotation {tp!r} for {key}")
    fail(key, f"must be {_type_name(tp)}, got {_show(value)}")


def build_block(cls: type, raw: Any, prefix: str) -> Any:
    """The frozen dataclass `cls` from a mapping, each key checked against its annotation."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        fail(prefix, f"must be a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            fail(f"{prefix}.{key}", f"is not a known key; known keys of `{prefix}`: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def params_from_dict(raw: dict[str, Any]) -> Params:
    if not isinstance(raw, dict):
        raise AudioclfError("params.yaml: the top level must be a mapping of blocks (data, split, ...)")
    blocks = {f.name: f.type for f in dataclasses.fields(Params)}
    hints = typing.get_type_hints(Params)
    for key in raw:
        if key not in blocks:
            fail(key, f"is not a known block; known blocks: {', '.join(blocks)}")
    return Params(**{k: build_block(hints[k], v, k) for k, v in raw.items()})


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole file (a typo anywhere is caught by whichever stage runs first)."""
    path = Path(path)
    if not path.is_file():
        raise AudioclfError(f"{path}: not found; run from the project root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AudioclfError(f"{path}: not valid YAML ({brief(exc)}); fix the syntax") from exc
    return params_from_dict(raw)


def to_dict(obj: Any) -> Any:
    """Dataclass → plain dict, for saving the resolved config next to artefacts."""
    return dataclasses.asdict(obj)


# Which params keys each stage reads. dvc.yaml must declare exactly these (a test checks it), so
# that editing a key reruns the stages that read it and nothing else.
STAGE_PARAMS: dict[str, list[str]] = {
    "download": [
        "data.dataset",
        "data.source",
        "data.version",
        "data.classes",
        "data.folds",
        "data.max_per_class",
        "data.max_total",
        "data.synthetic_clips_per_class",
        "data.synthetic_seed",
        "data.group_regex",
        "data.csv_path_column",
        "data.csv_label_column",
        "data.csv_fold_column",
        "data.csv_group_column",
        "data.timeout_s",
        "data.retries",
        "data.max_file_mb",
        "data.max_metadata_mb",
        "data.on_bad_row",
    ],
    "split": ["data.dataset"] + [f"split.{f.name}" for f in dataclasses.fields(SplitConfig)],  # dataset: auto folds
    "features": ["data.dataset", "data.sample_rate", "data.duration_s"]
    + [f"features.{f.name}" for f in dataclasses.fields(FeaturesConfig)],
    "train": [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)],
    "evaluate": [f"evaluate.{f.name}" for f in dataclasses.fields(EvaluateConfig)],
    "quantize": ["data.dataset"] + [f"quantize.{f.name}" for f in dataclasses.fields(QuantizeConfig)],  # model card
}

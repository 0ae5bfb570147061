"""Helpers shared by the tests (importable as `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Small enough that every stage runs in seconds, large enough that each split has every class.
TINY_PARAMS: dict = {
    "data": {"classes": ["whistle", "buzz", "clicks"], "synthetic_clips_per_class": 10},
    "train": {
        "model": "convnet",
        "model_params": {"convnet": {"channels": [4, 8]}},
        "epochs": 3,
        "batch_size": 8,
        "patience": 3,
        "augment": {"mixup_alpha": 0.0},
    },
    "features": {"n_mels": 32},
    "quantize": {"variants": ["fp32", "int8_static"], "calibration_samples": 8, "latency_runs": 2},
    "runtime": {"workers": 1},
}


TINY_CONVNET = {"convnet": {"channels": [4, 8], "dropout": 0.0}}  # train.model_params of a tiny net
TINY_TRAIN: dict = {"model": "convnet", "model_params": TINY_CONVNET, "epochs": 3, "batch_size": 8}


def tiny_net(
    arch: str = "convnet", n_classes: int = 4, in_channels: int = 1, n_freq: int = 16, seed: int = 0, **params
):
    """A seeded `Classifier` (normalisation -40 ± 2 dB) of a tiny `arch`: convnet [4, 8] unless
    `params` say otherwise (the architecture's params dataclass fields)."""
    import torch

    from audioclf import models
    from audioclf.network import build_model

    torch.manual_seed(seed)
    arch_params = models.get(arch).params(**({**TINY_CONVNET["convnet"], **params} if arch == "convnet" else params))
    mean, std = torch.full((in_channels, n_freq), -40.0), torch.full((in_channels, n_freq), 2.0)
    return build_model(arch, in_channels, n_classes, mean, std, arch_params)


def write_params(path: Path, overrides: dict | None = None) -> Path:
    """Write TINY_PARAMS merged with `overrides` (one level deep per block)."""
    params = {block: dict(values) for block, values in TINY_PARAMS.items()}
    for block, values in (overrides or {}).items():
        params.setdefault(block, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_train_project(
    root: Path, *, n: int, n_folds: int, noise: float, band: int, boost: float, train: dict, runtime: dict
) -> list[str]:
    """A tiny feature cache the train stage can run on, without audio: (n, 1, 16, 20) float16 noise
    around -40 dB with `boost` dB added to `band` mel rows per class; folds 1..n_folds round-robin
    (train <= 3, val 4, test 5 when there is one), and params. Returns the train stage's argv."""
    import json

    import numpy as np
    import pandas as pd

    n_classes = 4
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    x = rng.normal(0.0, noise, (n, 1, 16, 20)) - 40.0
    for i, c in enumerate(y):
        x[i, 0, 4 * c : 4 * c + band, :] += boost
    classes = [f"c{i}" for i in range(n_classes)]
    feats, splits = root / "features", root / "splits"
    feats.mkdir(parents=True)
    splits.mkdir()
    np.save(feats / "features.npy", x.astype(np.float16))
    index = pd.DataFrame({"row": range(n), "path": [f"a/{i}.wav" for i in range(n)], "label": [classes[c] for c in y]})
    index["fold"], index["group"] = np.arange(n) % n_folds + 1, ""
    index.to_csv(feats / "index.csv", index=False)
    meta = {"features": {}, "sample_rate": 8000, "duration_s": 0.25, "n_samples": 2000, "classes": classes}
    (feats / "meta.json").write_text(json.dumps({**meta, "shape": list(x.shape), "skipped": []}))
    index[index.fold <= 3].to_csv(splits / "train.csv", index=False)
    index[index.fold == 4].to_csv(splits / "val.csv", index=False)
    if n_folds >= 5:
        index[index.fold == 5].to_csv(splits / "test.csv", index=False)
    params = {"train": {**TINY_TRAIN, "lr": 0.01, **train}, "runtime": runtime}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return [
        "--params", str(root / "params.yaml"), "--features", str(feats), "--splits", str(splits),
        "--models", str(root / "models"), "--live", str(root / "metrics" / "train"),
    ]  # fmt: skip


# ---- the train stage on a tiny cache (resume, interrupts, disk-full, model-mismatch tests) ----


def write_tiny_project(root: Path, n: int = 60, **train: object) -> list[str]:
    """features (n, 1, 16, 20) float16 + index/meta, splits and params; returns the stage argv."""
    return write_train_project(
        root, n=n, n_folds=5, noise=2.0, band=2, boost=3.0,
        train={"patience": 100, **train},
        runtime={"device": "cpu", "threads": 1},  # one thread: bit-identical across processes
    )  # fmt: skip


def checkpoint_epoch(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def state(models: Path) -> dict:
    import torch

    return torch.load(models / "model.pt", map_location="cpu", weights_only=True)


def spy_epochs(monkeypatch) -> list[int]:
    """The epochs `training.train_epoch` trains from now on, in order (a resumed run must train
    only those after its checkpoint; replaying the checkpoint's history trains none)."""
    from audioclf import training

    trained: list[int] = []
    real = training.train_epoch

    def spy(run, train_state, net, epoch):
        trained.append(epoch)
        return real(run, train_state, net, epoch)

    monkeypatch.setattr(training, "train_epoch", spy)
    return trained


def logs(live: Path) -> dict[str, str]:
    return {str(p.relative_to(live)): p.read_text() for p in sorted((live / "plots").rglob("*.tsv"))}


# ---- a tiny exported model (8 kHz, 0.5 s clips, convnet [4, 8]) for export and predict tests ----

SAMPLE_RATE = 8000
DURATION_S = 0.5
N_SAMPLES = 4000
CLASSES = ["hum", "whistle", "hiss"]  # what `synth_clip` makes: low tone, high tone, noise
OPSET = 18


def tiny_features():
    from audioclf.config import FeaturesConfig

    return FeaturesConfig(n_fft=256, win_length=200, hop_length=80, n_mels=16, n_mfcc=8)


def synth_clip(label: int, rng, n: int = N_SAMPLES):
    """A clip of class `label` (index into CLASSES) at a random level: float32 (n,)."""
    import numpy as np

    t = np.arange(n) / SAMPLE_RATE
    if label == 0:
        wave = np.sin(2 * np.pi * rng.uniform(150, 400) * t)
    elif label == 1:
        wave = np.sin(2 * np.pi * rng.uniform(2000, 3500) * t)
    else:
        wave = 0.6 * rng.standard_normal(n)
    return (rng.uniform(0.2, 0.6) * wave).astype(np.float32)


def waveforms(n: int, seed: int = 0):
    """(n, N_SAMPLES) float32 clips cycling through the classes, and their labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    return np.stack([synth_clip(y, rng) for y in labels]), labels


def tiny_classifier(seed: int = 0, steps: int = 25):
    """A convnet [4, 8] trained for a few full-batch steps on `synth_clip`s: enough to separate
    the three classes, so argmax comparisons and predicted timelines mean something."""
    import torch

    from audioclf import export
    from audioclf.features import FeatureExtractor
    from audioclf.models.convnet import ConvNetParams
    from audioclf.network import build_model

    torch.manual_seed(seed)
    features = tiny_features()
    extractor = FeatureExtractor(features, SAMPLE_RATE)
    waves, labels = waveforms(48, seed)
    with torch.no_grad():
        feats = extractor(torch.from_numpy(waves))
    mean, std = feats.mean(dim=(0, 3)), feats.std(dim=(0, 3)) + 1e-3
    net = build_model("convnet", feats.shape[1], len(CLASSES), mean, std, ConvNetParams([4, 8], 0.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.03)
    target = torch.from_numpy(labels)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(feats), target).backward()
        optimizer.step()
    return export.WaveformClassifier(extractor, net).eval()


def export_tiny_model(out_dir: Path, variant: str = "fp32"):
    """`out_dir/model.onnx` + `model.onnx.json`, as the quantize stage deploys them."""
    from audioclf import export
    from audioclf.deploy import ONNX_NAME, DeploySidecar, sidecar_path

    full = tiny_classifier()
    path = out_dir / ONNX_NAME
    export.export_onnx(full, N_SAMPLES, path, OPSET)
    export.deploy_copy(path, path, CLASSES, SAMPLE_RATE, N_SAMPLES)  # the graph metadata predict requires
    sidecar = DeploySidecar(CLASSES, SAMPLE_RATE, N_SAMPLES, DURATION_S, variant=variant)
    sidecar_path(path).write_text(sidecar.to_json())
    return path, full


def tiny_cache(n: int = 40, n_classes: int = 4, seed: int = 0):
    """(x, y): (n, 1, 16, 20) float16 'spectrograms' where class c lights up frequency band c, plus
    noise, for the training-recipe tests."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(0.0, 1.0, (n, 1, 16, 20)) - 40.0
    for i, c in enumerate(y):
        x[i, 0, 4 * c : 4 * c + 3, :] += 6.0
    return x.astype(np.float16), y.astype(np.int64)


def tiny_cfg(**kw: object):
    """A TrainConfig for a tiny convnet on `tiny_cache`, with `kw` overriding its fields."""
    from audioclf.config import AugmentConfig, TrainConfig

    base = {
        "model": "convnet", "model_params": {"convnet": {"channels": [4, 8]}}, "epochs": 3, "batch_size": 8,
        "lr": 0.01, "patience": 10, "min_steps_per_epoch": 1, "augment": AugmentConfig(mixup_alpha=0.0),
    }  # fmt: skip
    return TrainConfig(**{**base, **kw})

"""Models and caches that do not belong together: a checkpoint or ONNX file from another
architecture or class list passed to evaluate or predict, and a corrupted feature cache. Each is
refused before use with one line naming the file and the fix; `torch.load(weights_only=True)`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from audioclf.checkpoint import CHECKPOINT_KEYS
from audioclf.deploy import ONNX_CLASSES_KEY, ONNX_N_SAMPLES_KEY, ONNX_SAMPLE_RATE_KEY
from audioclf.fileio import sha256_file
from tests.helpers import tiny_net, write_tiny_project
from tests.robustness.bad_inputs import AUDIO_CASES, UNUSABLE, build_audio, cli, leftovers, one_line_error

CLASSES = ["c0", "c1", "c2", "c3"]  # write_tiny_project's: features (60, 1, 16, 20)
SHAPE = [1, 16, 20]


def sidecar(classes=CLASSES, shape=SHAPE, arch: str = "convnet") -> dict:
    """A model.json as the train stage wrote it before `format` existed (format 1): it still loads."""
    return {
        "architecture": arch,
        "model_params": {"channels": [4, 8], "dropout": 0.0},
        "classes": list(classes),
        "input_shape": list(shape),
        "normalization": {"mean": np.full(shape[:2], -40.0).tolist(), "std": np.full(shape[:2], 2.0).tolist()},
        "feature_params": {},
        "sample_rate": 8000,
        "duration_s": 0.25,
        "n_samples": 2000,
    }


def net(arch: str = "convnet", n_classes: int = 4, in_channels: int = 1, n_freq: int = 16) -> torch.nn.Module:
    return tiny_net(arch, n_classes, in_channels, n_freq)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("project")
    argv = write_tiny_project(root)
    (root / "models").mkdir()
    torch.save(net().state_dict(), root / "models" / "model.pt")
    (root / "models" / "model.json").write_text(json.dumps(sidecar()))
    return root, argv


def _evaluate(root: Path, models: Path, capsys) -> tuple[int, str]:
    return cli(
        ["stage", "evaluate", "--params", str(root / "params.yaml"), "--features", str(root / "features"),
         "--splits", str(root / "splits"), "--models", str(models), "--metrics", str(models.parent / "metrics")],
        capsys,
    )  # fmt: skip


def test_a_matching_model_evaluates(project, capsys) -> None:
    root, _ = project
    code, err = _evaluate(root, root / "models", capsys)
    assert code == 0, err
    assert json.loads((root / "metrics" / "eval.json").read_text())["test"]["n"] == 12


def _weights(state: object):
    return lambda path: torch.save(state, path)


CHECKPOINT = {**dict.fromkeys(CHECKPOINT_KEYS, 0), "fingerprint": "x", "model": net().state_dict(), "history": []}
CASES = {  # name: (write model.pt, sidecar, expected message)
    "other architecture": (_weights(net("resnet18").state_dict()), sidecar(),
                           r"model\.pt: its weights are not those of a convnet for 4 classes .*another architecture"),
    "other class count": (_weights(net(n_classes=5).state_dict()), sidecar(),
                          r"model\.pt: its output layer has 5 classes but model\.json lists 4"),
    "other input channels": (_weights(net(in_channels=2).state_dict()), sidecar(),
                             r"model\.pt: net\.features\.0\.0\.weight is \[4, 2, 3, 3\] but .* needs \[4, 1, 3, 3\]"),
    "other class list": (_weights(net().state_dict()), sidecar(classes=["w", "x", "y", "z"]),
                         r"model\.json: the model's classes differ from data/features/meta\.json's; retrain"),
    "other input shape": (_weights(net(n_freq=32).state_dict()), sidecar(shape=[1, 32, 20]),
                          r"model\.json: the model expects input \[1, 32, 20\] but the features are \[1, 16, 20\]"),
    "training checkpoint": (_weights(CHECKPOINT), sidecar(), r"model\.pt: is a training checkpoint .*rerun the train"),
    "pickled module": (_weights(net()), sidecar(), r"model\.pt: not a readable weights file with weights_only=True"),
    "not a checkpoint": (lambda p: p.write_bytes(b"PK\x03\x04 garbage"), sidecar(), r"model\.pt: not a readable"),
    "sidecar not JSON": (_weights(net().state_dict()), "{", r"model\.json: not a readable JSON sidecar"),
    "sidecar of something else": (_weights(net().state_dict()), {"classes": CLASSES},
                                  r"model\.json: lacks architecture, model_params, input_shape, normalization"),
    "sidecar of a newer version": (_weights(net().state_dict()), {**sidecar(), "format": 99},
                                   r"model\.json: format 99 is not one this version reads .*re-run train"),
    "format-1 resnet sidecar": (_weights(net("resnet18").state_dict()), sidecar(arch="resnet18"),
                                r"model\.json: `model_params\.channels` is not a known key.*retrain"),
    "unknown architecture": (_weights(net().state_dict()), sidecar(arch="vgg11"),
                             r"model\.json: architecture is 'vgg11'; choose one of bcresnet, convnet, .*retrain"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mismatched_model_is_refused_by_evaluate(project, tmp_path: Path, capsys, name: str) -> None:
    import re

    root, _ = project
    write_weights, side, expected = CASES[name]
    models = tmp_path / "models"
    models.mkdir()
    write_weights(models / "model.pt")
    (models / "model.json").write_text(side if isinstance(side, str) else json.dumps(side))
    code, err = _evaluate(root, models, capsys)
    assert code == 2
    line = one_line_error(err)
    assert re.search(expected, line), line
    assert not (tmp_path / "metrics").exists()  # nothing written


@pytest.mark.parametrize(
    "foreign",
    [torch.zeros(3), [1, 2], {"fingerprint": "another run", "epoch": 1}, b"\x00 torn"],
    ids=["tensor", "list", "other run", "torn file"],
)
def test_a_foreign_file_as_the_resume_checkpoint_means_training_starts_afresh(tmp_path: Path, foreign) -> None:
    from audioclf.stages import train

    argv = write_tiny_project(tmp_path, epochs=2)
    ckpt = tmp_path / "models" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(foreign) if isinstance(foreign, bytes) else torch.save(foreign, ckpt)
    threads = torch.get_num_threads()
    try:
        train.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2 and (tmp_path / "models" / "model.pt").is_file()


# -- a corrupted feature cache ------------------------------------------------------------------


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _nan(path: Path) -> None:
    x = np.load(path)
    x[3, 0, 0, 0] = np.nan
    np.save(path, x)


CORRUPTIONS = {
    "truncated npy": ("features.npy", lambda p: p.write_bytes(p.read_bytes()[:500]), r"unreadable feature cache"),
    "flipped byte": ("features.npy", _flip, r"features\.npy: its checksum differs from meta\.json's"),
    "NaN written in": ("features.npy", _nan, r"features\.npy: its checksum differs from meta\.json's"),
    "meta.json not JSON": ("meta.json", lambda p: p.write_text('{"shape": [60'), r"unreadable index\.csv or meta"),
    "meta.json without shape": ("meta.json", lambda p: p.write_text("{}"), r"index\.csv or meta\.json is incomplete"),
    "index.csv binary": ("index.csv", lambda p: p.write_bytes(b"\x00\xff\xfe" * 50), r"unreadable index\.csv"),
    "index.csv short": ("index.csv", lambda p: p.write_text("row,path,label\n0,a/0.wav,c0\n"), r"disagrees with"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_corrupted_feature_cache_is_refused_before_training(tmp_path: Path, capsys, name: str) -> None:
    import re

    argv = write_tiny_project(tmp_path)
    feats = tmp_path / "features"
    meta = json.loads((feats / "meta.json").read_text())
    meta["features_sha256"] = sha256_file(feats / "features.npy")  # as the features stage writes it
    (feats / "meta.json").write_text(json.dumps(meta))
    target, corrupt, expected = CORRUPTIONS[name]
    corrupt(feats / target)
    threads = torch.get_num_threads()
    try:
        code, err = cli(["stage", "train", *argv], capsys)
    finally:
        torch.set_num_threads(threads)
    assert code == 2
    line = one_line_error(err)
    assert re.search(expected, line) and "dvc repro -f features" in line, line
    assert not (tmp_path / "models" / "model.pt").exists() and leftovers(tmp_path) == []


# -- predict: the deployed ONNX model and its sidecar ------------------------------------------

N_SAMPLES, SAMPLE_RATE = 2000, 8000


def tiny_onnx(path: Path, n_classes: int = 3, n_samples: int = N_SAMPLES, classes: list[str] | None = None) -> Path:
    """waveform (batch, n_samples) → logits (batch, n_classes): one MatMul, built without torch."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((n_samples, n_classes)) * 0.01).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["waveform", "W"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", n_samples])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if classes is not None:
        helper.set_model_props(
            model,
            {ONNX_CLASSES_KEY: json.dumps(classes), ONNX_SAMPLE_RATE_KEY: str(SAMPLE_RATE),
             ONNX_N_SAMPLES_KEY: str(n_samples)},
        )  # fmt: skip
    onnx.save(model, str(path))
    return path


def write_sidecar(model: Path, classes: list[str], n_samples: int = N_SAMPLES) -> None:
    side = {"classes": classes, "sample_rate": SAMPLE_RATE, "duration_s": n_samples / SAMPLE_RATE,
            "n_samples": n_samples, "input": "waveform", "output": "logits", "variant": "fp32"}  # fmt: skip
    model.with_name(model.name + ".json").write_text(json.dumps(side))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_audio(tmp_path_factory.mktemp("clips"))


def test_predict_scores_odd_audio_and_names_each_unusable_file(tmp_path: Path, clips, capsys) -> None:
    model = tiny_onnx(tmp_path / "model.onnx", classes=["hum", "hiss", "tick"])
    write_sidecar(model, ["hum", "hiss", "tick"])
    from audioclf.cli import main

    code = main(["predict", str(clips["ten_minutes"].parent), "--model", str(model), "--json", "--hop", "0.25"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert len(err.strip().splitlines()) == len(UNUSABLE)  # one line per file that could not be scored
    assert code == 1  # some files could not be scored
    errors = {Path(e["path"]).stem: e["error"] for e in doc["errors"]}
    assert sorted(errors) == UNUSABLE
    for name, message in errors.items():
        assert AUDIO_CASES[name][1] in message and "\n" not in message
    preds = {Path(p["path"]).stem: p for p in doc["predictions"]}
    assert len(preds) == len(AUDIO_CASES) - len(UNUSABLE)
    assert all(np.isfinite(p["probability"]) for p in preds.values())
    assert preds["ten_minutes"]["duration_s"] == 600.0 and len(preds["ten_minutes"]["segments"]) == 2400


# name: (n_classes in the graph, graph metadata classes, sidecar classes, sidecar n_samples, expected)
PREDICT_CASES = {
    "other class count": (3, None, CLASSES, N_SAMPLES, r"4 classes but .*model\.onnx outputs 3 logits"),
    "other class names": (3, ["a", "b", "c"], ["c", "b", "a"], N_SAMPLES,
                          r'model\.onnx\.json: classes \["c", "b", "a"\] but .* exported with \["a", "b", "c"\]'),
    "other clip length": (3, None, ["a", "b", "c"], 4000, r"n_samples 4000 but .*model\.onnx takes input shape"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PREDICT_CASES))
def test_predict_refuses_a_sidecar_from_another_model(tmp_path: Path, clips, capsys, name: str) -> None:
    import re

    n_classes, graph_classes, side_classes, side_n, expected = PREDICT_CASES[name]
    model = tiny_onnx(tmp_path / "model.onnx", n_classes, classes=graph_classes)
    write_sidecar(model, side_classes, side_n)
    code, err = cli(["predict", str(clips["float32"]), "--model", str(model)], capsys)
    assert code == 2
    line = one_line_error(err)
    assert re.search(expected, line), line


def test_predict_refuses_a_checkpoint_or_a_model_without_sidecar(tmp_path: Path, clips, capsys) -> None:
    fake = tmp_path / "model.onnx"
    torch.save(net().state_dict(), fake)
    write_sidecar(fake, ["a", "b", "c"])
    code, err = cli(["predict", str(clips["float32"]), "--model", str(fake)], capsys)
    assert code == 2 and "model.onnx: onnxruntime cannot load it" in one_line_error(err)
    other = tiny_onnx(tmp_path / "other.onnx")
    code, err = cli(["predict", str(clips["float32"]), "--model", str(other)], capsys)
    assert code == 2 and "other.onnx.json: sidecar not found" in one_line_error(err)
    shutil.rmtree(tmp_path)

"""Every stage in-process on the tiny config (the session fixture `tiny_run` runs them once)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from audioclf.audio import load_clip
from audioclf.config import DESIGN_EVAL_KEYS, FeaturesConfig
from audioclf.deploy import DEPLOY_FORMAT
from audioclf.features import FeatureExtractor
from audioclf.headline import DEPLOYED_HEADLINE, EVAL_HEADLINE
from audioclf.metrics import macro_f1
from audioclf.stages import split as split_stage
from tests.helpers import write_params


def test_download_writes_metadata_manifest_and_only_selected_audio(tiny_run):
    raw = tiny_run / "data" / "raw"
    meta = pd.read_csv(raw / "metadata.csv")
    assert set(meta["label"]) == {"whistle", "buzz", "clicks"} and len(meta) == 30
    assert len(list(raw.rglob("*.wav"))) == 30
    assert len(pd.read_csv(raw / "manifest.csv")) == 30


def test_split_is_by_fold_and_disjoint(tiny_run):
    parts = {n: pd.read_csv(tiny_run / "data" / "splits" / f"{n}.csv") for n in ("train", "val", "test")}
    assert set(parts["test"]["fold"]) == {5} and set(parts["val"]["fold"]) == {4}
    all_paths = pd.concat(parts.values())["path"]
    assert all_paths.is_unique and len(all_paths) == 30


def test_features_are_one_contiguous_unnormalised_array(tiny_run):
    feats = tiny_run / "data" / "features"
    x = np.load(feats / "features.npy", mmap_mode="r")
    meta = json.loads((feats / "meta.json").read_text())
    index = pd.read_csv(feats / "index.csv")
    assert x.shape == (30, 1, 32, 101) and x.dtype == np.float16
    assert list(x.shape) == meta["shape"] and len(index) == 30
    assert meta["classes"] == ["buzz", "clicks", "whistle"] and meta["sample_rate"] == 16000
    # row 3 is exactly the library feature function of that clip, not normalised
    cfg = FeaturesConfig(**meta["features"])
    wave = load_clip(tiny_run / "data" / "raw" / index["path"][3], 16000, meta["n_samples"])
    with torch.no_grad():
        expected = FeatureExtractor(cfg, 16000)(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(np.asarray(x[3], dtype=np.float32), expected, atol=0.05, rtol=1e-3)


def test_train_writes_model_sidecar_and_learning_curves(tiny_run):
    sidecar = json.loads((tiny_run / "models" / "model.json").read_text())
    assert sidecar["architecture"] == "convnet" and sidecar["input_shape"] == [1, 32, 101]
    assert len(sidecar["normalization"]["mean"][0]) == 32
    assert (tiny_run / "models" / "model.pt").is_file()
    assert (tiny_run / "models" / "checkpoints" / "last.pt").is_file()
    summary = json.loads((tiny_run / "metrics" / "train" / "metrics.json").read_text())
    val_f1 = pd.read_csv(tiny_run / "metrics" / "train" / "plots" / "metrics" / "val" / "f1_macro.tsv", sep="\t")
    best = int(val_f1["f1_macro"].to_numpy().argmax())  # the shipped epoch is the best one logged
    assert summary["best"]["epoch"] == best + 1 == sidecar["best_epoch"]
    assert summary["best"]["val_f1_macro"] == pytest.approx(val_f1["f1_macro"].iloc[best])
    loss = pd.read_csv(tiny_run / "metrics" / "train" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert len(loss) == 3 and loss["loss"].iloc[-1] < loss["loss"].iloc[0]  # it learned something


def test_train_final_fit_learns_from_the_val_rows_and_ships_the_last_epoch(tiny_run, tmp_path, monkeypatch):
    from audioclf.stages import train as train_stage

    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", {"train": {"include_val": True, "keep": "last", "patience": 1}})
    splits = tiny_run / "data" / "splits"
    train_stage.main(
        ["--params", str(params), "--features", str(tiny_run / "data" / "features"), "--splits", str(splits),
         "--models", str(tmp_path / "models"), "--live", str(tmp_path / "live")]
    )  # fmt: skip
    sidecar = json.loads((tmp_path / "models" / "model.json").read_text())
    n_fit = sum(len(pd.read_csv(splits / f"{name}.csv")) for name in ("train", "val"))
    assert sidecar["normalization"]["fitted_on"] == f"{n_fit} training rows"
    assert sidecar["best_epoch"] == sidecar["train"]["epochs"] == 3  # every epoch ran despite patience 1
    assert sidecar["train"]["include_val"] is True and sidecar["train"]["keep"] == "last"


def test_evaluate_writes_design_metric_keys_and_plots(tiny_run):
    metrics = tiny_run / "metrics"
    head = json.loads((metrics / "eval.json").read_text())["test"]
    assert list(head) == list(EVAL_HEADLINE)  # only the headline: one `dvc exp show` column each
    assert head["n"] == 6 and 0 <= head["f1_macro"] <= 1
    details = json.loads((metrics / "details" / "eval.json").read_text())["test"]
    assert set(details) == set(DESIGN_EVAL_KEYS) and details["f1_macro"] == head["f1_macro"]
    per_class = json.loads((metrics / "per_class.json").read_text())
    assert set(per_class) == {"buzz", "clicks", "whistle"}
    # every (actual, predicted) pair, zeros included, so each class is on both plot axes
    confusion = pd.read_csv(metrics / "plots" / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted", "count"] and len(confusion) == 9
    assert set(confusion["predicted"]) == set(per_class) and confusion["count"].sum() == 6
    # the headline is the macro-F1 of the predictions the plot data counts
    clips = confusion.loc[confusion.index.repeat(confusion["count"])]
    ids = {c: i for i, c in enumerate(sorted(per_class))}
    f1 = macro_f1(clips["actual"].map(ids).to_numpy(), clips["predicted"].map(ids).to_numpy(), 3)
    assert head["f1_macro"] == pytest.approx(f1)
    assert (metrics / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(pd.read_csv(metrics / "mistakes.csv").columns)[:4] == ["path", "actual", "predicted", "probability"]


def network_bytes(path) -> int:
    import onnx

    from audioclf.export import FRONT_END_WEIGHTS

    inits = onnx.load(str(path)).graph.initializer
    return sum(len(i.raw_data) for i in inits if not i.name.endswith(FRONT_END_WEIGHTS))


def test_quantize_reports_variants_and_deploys_with_sidecar(tiny_run):
    headline = json.loads((tiny_run / "metrics" / "quantize.json").read_text())
    assert list(headline) == ["deployed"] and list(headline["deployed"]) == ["variant", *DEPLOYED_HEADLINE]
    report = json.loads((tiny_run / "metrics" / "details" / "quantize.json").read_text())
    assert report["deployed"] == headline["deployed"]["variant"] == "fp32"
    assert headline["deployed"]["size_mb"] == report["fp32"]["size_mb"]
    for variant in ("fp32", "int8_static"):
        row = report[variant]
        assert row["size_mb"] > 0 and row["latency_ms_b1"] > 0
        assert row["f1_drop"] == round(report["fp32"]["f1_macro"] - row["f1_macro"], 4)
    assert report["fp32"]["argmax_agreement"] == 1.0 and report["fp32"]["max_abs_diff"] < 1e-3
    # the network's weights shrink; the front-end's DFT kernel stays float32 in every variant
    assert network_bytes(tiny_run / "models/variants/int8_static.onnx") < network_bytes(tiny_run / "models/model.onnx")
    sidecar = json.loads((tiny_run / "models" / "model.onnx.json").read_text())
    calibration = json.loads((tiny_run / "metrics" / "calibration.json").read_text())
    assert sidecar["temperature"] == calibration["temperature"] > 0
    assert set(calibration["test"]) == {"uncalibrated", "calibrated"}
    assert sidecar["classes"] == ["buzz", "clicks", "whistle"] and sidecar["n_samples"] == 16000
    assert sidecar["format"] == DEPLOY_FORMAT and sidecar["test_f1_macro"] == report["fp32"]["f1_macro"]
    fp32_bytes = (tiny_run / "models" / "variants" / "fp32.onnx").stat().st_size
    assert report["fp32"]["size_mb"] == round(fp32_bytes / 1e6, 4)
    # the deployed copy is the fp32 graph plus its metadata (classes, rate, clip length)
    assert 0 < (tiny_run / "models" / "model.onnx").stat().st_size - fp32_bytes < 1000


def test_split_stage_error_when_download_missing(tmp_path, monkeypatch):
    from audioclf.errors import AudioclfError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(AudioclfError, match="run the download stage first"):
        split_stage.main(["--params", str(write_params(tmp_path / "params.yaml"))])


def test_quantize_writes_a_model_card_of_the_deployed_model(tiny_run):
    card = (tiny_run / "models" / "model-card.md").read_text()
    report = json.loads((tiny_run / "metrics" / "details" / "quantize.json").read_text())
    for heading in ("## Data", "## Provenance", "## Test results", "## Quantization", "## Intended use", "## Limits"):
        assert heading in card
    assert "built-in synthetic" in card and "`buzz`, `clicks`, `whistle`" in card
    assert "- test: 6 clips (fold 5)" in card and "- val: 6 clips (fold 4)" in card
    assert "not run from a git commit" in card  # the tiny run's folder is no git checkout
    assert f"| **fp32** (deployed) | {report['fp32']['size_mb']:.4f} |" in card
    assert "| `train.epochs` | `3` |" in card
    image = tiny_run / "models" / "model-card-confusion.png"
    assert "](model-card-confusion.png)" in card and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

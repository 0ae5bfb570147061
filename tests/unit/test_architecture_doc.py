"""docs/architecture.md's worked examples ("Add a model / a corpus / a feature kind") run as written."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audioclf import features, models
from audioclf.config import DataConfig, FeaturesConfig, params_from_dict
from audioclf.errors import AudioclfError
from tests.helpers import REPO


def _block(heading: str, lang: str) -> str:
    """The first ```lang block after `### heading`."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index(f"### {heading}") :]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def _module(name: str, code: str, monkeypatch) -> types.ModuleType:
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, f"docs/architecture.md ({name})", "exec"), module.__dict__)
    return module


@pytest.fixture
def mlp(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models.architectures()))  # the example registers into a copy
    return _module("audioclf.models.mlp", _block("Add a model", "python"), monkeypatch)


def test_the_model_example_is_one_file_validated_built_and_stored_whole(mlp, tmp_path):
    from audioclf.modelio import load_model, save_model
    from audioclf.network import build_model
    from audioclf.sidecar import ModelSidecar

    raw = yaml.safe_load(_block("Add a model", "yaml"))
    cfg = params_from_dict(raw).train
    assert cfg.model == "mlp" and cfg.arch_params == mlp.MLPParams(hidden=32)
    assert params_from_dict({"train": {"model": "mlp"}}).train.arch_params == mlp.MLPParams()  # its defaults
    for bad, key in (({"hidden": 0}, "hidden"), ({"hiden": 3}, "hiden"), ({"dropout": "x"}, "dropout")):
        with pytest.raises(AudioclfError, match=rf"`train\.model_params\.mlp\.{key}`"):
            params_from_dict({"train": {"model": "mlp", "model_params": {"mlp": bad}}})

    torch.manual_seed(0)
    model = build_model("mlp", 1, 3, torch.zeros(1, 16), torch.ones(1, 16), cfg.arch_params).eval()
    assert model(torch.randn(2, 1, 16, 20)).shape == (2, 3)
    norm = {"mean": np.zeros((1, 16)).tolist(), "std": np.ones((1, 16)).tolist()}
    sidecar = ModelSidecar(
        "mlp", cfg.arch_params, ["a", "b", "c"], [1, 16, 20], norm, FeaturesConfig(), 8000, 0.25, 2000
    )
    save_model(model, sidecar, tmp_path)
    loaded, meta = load_model(tmp_path)
    assert meta.model_params == mlp.MLPParams(hidden=32)
    x = torch.randn(2, 1, 16, 20)
    torch.testing.assert_close(loaded(x), model(x))


def test_the_corpus_example_downloads(monkeypatch, tmp_path):
    from audioclf.download import run_download

    tones = _module("audioclf.sources.tones", _block("Add a corpus", "python"), monkeypatch)
    source = tones.TonesSource(DataConfig(classes=["low", "high"]), cache_dir=tmp_path / "cache", progress=False)
    report = run_download(source, tmp_path / "raw", workers=1, progress=False)
    assert report.selected == report.fetched == 8
    wave, rate = sf.read(tmp_path / "raw" / "audio" / "high_3.wav")
    assert rate == 8000 and len(wave) == 2000
    with pytest.raises(AudioclfError, match=r"`data.dataset`"):  # the second place: config.DatasetName
        params_from_dict({"data": {"dataset": "tones"}})


def test_the_feature_kind_example_extracts(monkeypatch):
    namespace = dict(vars(features), FEATURE_KINDS={})
    exec(_block("Add a feature kind", "python"), namespace)
    monkeypatch.setitem(features.FEATURE_KINDS, "loglinear", namespace["_loglinear"])
    cfg = FeaturesConfig(kind="loglinear", n_fft=256, win_length=200, hop_length=80, n_mels=16)
    with torch.no_grad():
        out = features.FeatureExtractor(cfg, 8000)(torch.randn(2, 2000) * 0.1)
    assert out.shape == (2, 1, 129, 26) and torch.isfinite(out).all()
    with pytest.raises(AudioclfError, match=r"`features.kind`"):  # the second place: config.FeatureKind
        params_from_dict({"features": {"kind": "loglinear"}})

import dataclasses
import subprocess
import sys

import pytest
import yaml

from audioclf import models
from audioclf.config import DATASETS, FEATURE_KINDS, STAGE_PARAMS, Params, load_params, params_from_dict, to_dict
from audioclf.errors import AudioclfError
from tests.helpers import REPO


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= _keys(value, f"{prefix}{key}.")
    return out


def test_repo_params_yaml_is_exactly_the_dataclass_defaults_in_every_block():
    """The defaults live in config.py (and each model file); params.yaml spells out every one of
    them, with the same values, so running with an empty params file changes nothing."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = load_params(REPO / "params.yaml")
    defaults = Params()
    assert [f.name for f in dataclasses.fields(Params)] == list(raw)
    for block in raw:
        assert getattr(params, block) == getattr(defaults, block), block
        # every key of the block is written out (the model blocks: the chosen model's, at least)
        assert _keys(raw[block]) == _keys(to_dict(getattr(defaults, block))), block


def test_each_model_block_in_params_yaml_is_its_models_defaults():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["train"]["model_params"]
    for name, block in raw.items():
        assert models.get(name).params(**block) == models.get(name).params(), name


def test_corpus_and_feature_kind_names_are_their_registries():
    from audioclf.features import FEATURE_KINDS as EXTRACTORS
    from audioclf.sources import _REGISTRY as SOURCES

    assert set(DATASETS) == set(SOURCES)
    assert set(FEATURE_KINDS) == set(EXTRACTORS)


def test_validating_every_block_imports_no_torch():
    code = (
        "import sys; from audioclf.config import load_params; "
        f"p = load_params({str(REPO / 'params.yaml')!r}); "
        "assert p.train.arch_params.channels; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_switching_the_model_alone_takes_its_defaults():
    params = params_from_dict({"train": {"model": "resnet18", "model_params": {"convnet": {"channels": [4]}}}})
    assert params.train.arch_params == models.get("resnet18").params()
    assert params.train.resolved()["model_params"] == {"resnet18": {"dropout": 0.2, "pretrained": "none"}}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"epoch": 3}}, "train.epoch"),  # typo: unknown key
        ({"trian": {}}, "trian"),  # unknown block
        ({"train": {"epochs": "ten"}}, "train.epochs"),  # wrong type
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"model": "vgg"}}, "train.model"),
        ({"features": {"kind": "cqt"}}, "features.kind"),
        ({"features": {"n_fft": 256, "win_length": 256, "n_mels": 200}}, "features.n_mels"),
        ({"features": {"hop_length": 500}}, "features.hop_length"),
        ({"split": {"test_fold": 2, "val_fold": 2}}, "split.val_fold"),
        ({"quantize": {"deploy": "int8_static", "variants": ["fp32"]}}, "quantize.deploy"),
        ({"data": {"sample_rate": "fast"}}, "data.sample_rate"),
        ({"train": {"augment": {"mixup": 0.2}}}, "train.augment.mixup"),
        ({"train": {"model_params": {"convnet": {"channel": [4]}}}}, "train.model_params.convnet.channel"),
        ({"train": {"model_params": {"convnet": {"channels": "4"}}}}, "train.model_params.convnet.channels"),
        ({"train": {"model_params": {"convnet": {"dropout": 1.5}}}}, "train.model_params.convnet.dropout"),
        ({"train": {"model_params": {"resnet18": {"pretrained": "yes"}}}}, "train.model_params.resnet18.pretrained"),
        ({"train": {"model_params": {"vgg": {}}}}, "train.model_params.vgg"),
        ({"train": {"model_params": [1]}}, "train.model_params"),
        ({"train": {"optimizer": "adam"}}, "train.optimizer"),
        ({"train": {"keep": "final"}}, "train.keep"),
        ({"train": {"include_val": True}}, "train.include_val"),  # without keep: last
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(AudioclfError) as info:
        params_from_dict(raw)
    message = str(info.value)
    assert f"`{key}`" in message
    assert "\n" not in message


def test_ints_accepted_for_floats_and_auto_literals():
    params = params_from_dict({"train": {"lr": 1}, "data": {"sample_rate": 8000, "duration_s": 2}})
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.data.sample_rate == 8000 and params.data.duration_s == 2.0


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(AudioclfError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(AudioclfError, match="not valid YAML"):
        load_params(bad)


def test_runtime_is_never_a_stage_param():
    for keys in STAGE_PARAMS.values():
        assert not any(k.startswith("runtime") for k in keys)

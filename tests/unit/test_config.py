import pytest

from audioclf.config import STAGE_PARAMS, Params, load_params, params_from_dict
from audioclf.errors import AudioclfError
from tests.helpers import REPO


def test_repo_params_yaml_loads_with_defaults_matching_dataclasses():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "synthetic"
    assert params.train.model == "convnet"
    # the file spells out every default: nothing in it silently differs from the code's intent
    assert params.features == Params().features
    assert params.split == Params().split


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

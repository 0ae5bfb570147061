"""The model registry (one file per architecture, typed params), first-conv adaptation and
ImageNet weights from a local torch cache."""

from __future__ import annotations

import pytest
import torch
import torchvision

from audioclf import models
from audioclf.config import TrainConfig
from audioclf.errors import AudioclfError
from audioclf.models.convnet import ConvNetParams
from audioclf.models.resnet import IMAGENET_WEIGHTS, adapt_first_conv, imagenet_weights_path
from audioclf.network import backbone_parameters, build_model

MODELS = sorted(models.architectures())


def make(name: str, in_channels: int = 1, n_classes: int = 5, **kw: object):
    mean, std = torch.zeros(in_channels, 32), torch.ones(in_channels, 32)
    params = {"channels": [4, 8], "dropout": 0.1} if name == "convnet" else {"dropout": 0.1}
    arch_params = models.get(name).params(**{**params, **kw}) if name in MODELS else None
    return build_model(name, in_channels, n_classes, mean, std, arch_params)


def test_the_registry_is_the_model_files_and_each_has_typed_default_params():
    assert MODELS == ["bcresnet", "convnet", "fastcnn", "mobilenet", "resnet18", "resnet34"]
    for name in MODELS:
        cfg = TrainConfig(model=name)  # `-S train.model=X` alone: X with its defaults
        assert cfg.arch_params == models.get(name).params()
        assert list(cfg.resolved()["model_params"]) == [name]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_channels", [1, 2])
def test_every_model_maps_features_to_logits(name, in_channels):
    model = make(name, in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 32, 24))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_convnet_depth_and_width_follow_channels():
    model = build_model("convnet", 1, 3, torch.zeros(1, 8), torch.ones(1, 8), ConvNetParams([2, 4, 6], 0.5))
    convs = [m for m in model.net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 2, 4, 4, 6, 6]
    assert model.net.head[1].p == 0.5


def test_unknown_model_is_a_user_error():
    with pytest.raises(AudioclfError, match=r"train\.model"):
        make("vgg11")


def test_head_is_all_that_stays_trainable_when_the_backbone_is_frozen():
    for name in ("convnet", "resnet18"):
        net = make(name).net
        frozen = {id(p) for p in backbone_parameters(name, net)}
        trainable = [n for n, p in net.named_parameters() if id(p) not in frozen]
        assert trainable and all(n.startswith(("head", "fc")) for n in trainable), trainable


def test_first_conv_adaptation_keeps_the_response_scale():
    rgb = torch.randn(8, 3, 7, 7)
    grey = torch.randn(1, 1, 16, 16)
    one = adapt_first_conv(rgb, 1)
    # a grey image is R=G=B: the adapted filter on one channel must answer like the RGB one
    ref = torch.nn.functional.conv2d(grey.repeat(1, 3, 1, 1), rgb)
    torch.testing.assert_close(torch.nn.functional.conv2d(grey, one), ref)
    # more channels: the RGB filters tiled and scaled by 3/C, so the expected response is kept
    torch.testing.assert_close(adapt_first_conv(rgb, 2), rgb[:, :2] * 1.5)
    torch.testing.assert_close(adapt_first_conv(rgb, 4), torch.cat([rgb, rgb[:, :1]], dim=1) * 0.75)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_imagenet_weights_are_read_from_the_local_torch_cache(torch_home):
    path = imagenet_weights_path("resnet18")
    assert path == torch_home / "hub" / "checkpoints" / IMAGENET_WEIGHTS["resnet18"]
    torch.manual_seed(123)
    fabricated = torchvision.models.resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(fabricated, path)
    torch.manual_seed(0)
    net = make("resnet18", in_channels=2, pretrained="imagenet").net
    state = net.state_dict()
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.weight"):
        assert torch.equal(state[key], fabricated[key])
    torch.testing.assert_close(state["conv1.weight"], adapt_first_conv(fabricated["conv1.weight"], 2))
    assert state["fc.1.weight"].shape == (5, 512)  # a new head for our classes
    scratch = make("resnet18", in_channels=2).net.state_dict()
    assert not torch.equal(scratch["layer1.0.conv1.weight"], fabricated["layer1.0.conv1.weight"])


def test_missing_imagenet_weights_name_the_file(torch_home):
    expected = str(torch_home / "hub" / "checkpoints" / "resnet34-b627a593.pth")
    with pytest.raises(AudioclfError, match="not found") as err:
        make("resnet34", pretrained="imagenet")
    assert expected in str(err.value) and "train.model_params.resnet34.pretrained" in str(err.value)


def test_a_wrong_weights_file_is_a_user_error(torch_home):
    path = imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(AudioclfError, match="not a torchvision resnet18 state_dict"):
        make("resnet18", pretrained="imagenet")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(AudioclfError, match="unreadable"):
        make("resnet18", pretrained="imagenet")

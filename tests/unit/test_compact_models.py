"""The compact architectures for real clip lengths (fastcnn, bcresnet, mobilenet), the MAC
counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audioclf import models
from audioclf.config import TrainConfig
from audioclf.errors import AudioclfError
from audioclf.macs import count_macs, count_params, macs_per_second

COMPACT = ("fastcnn", "bcresnet", "mobilenet")


def build(name: str, n_classes: int = 5, **params: object) -> nn.Module:
    arch = models.get(name)
    torch.manual_seed(0)
    return arch.build(1, n_classes, arch.params(**params))


@pytest.mark.parametrize("name", COMPACT)
@pytest.mark.parametrize("shape", [(64, 101), (40, 501), (128, 33)])
def test_compact_models_classify_any_clip_length_and_mel_count(name, shape):
    net = build(name).eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 1, *shape))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_fastcnn_costs_at_most_a_fifth_of_convnet_per_second_of_audio():
    per_s = {name: macs_per_second(build(name), 1, 64, 100) for name in ("convnet", "fastcnn")}
    assert per_s["fastcnn"] <= per_s["convnet"] / 5


def test_mac_counter_counts_convolutions_depthwise_and_linear_layers():
    conv = nn.Conv2d(1, 4, 3, padding=1)  # 8x10 outputs x 4 channels x 9 taps
    assert count_macs(conv, (1, 8, 10)) == 8 * 10 * 4 * 9
    depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)  # one input channel per output
    assert count_macs(depthwise, (4, 8, 10)) == 8 * 10 * 4 * 9
    net = nn.Sequential(nn.Flatten(), nn.Linear(80, 3))
    assert count_macs(net, (1, 8, 10)) == 240
    assert count_params(net) == 243


def test_compact_model_params_are_validated_with_their_key():
    with pytest.raises(AudioclfError, match=r"train\.model_params\.fastcnn.*channels"):
        TrainConfig(model="fastcnn", model_params={"fastcnn": {"channels": [8]}})
    with pytest.raises(AudioclfError, match=r"train\.model_params\.bcresnet.*width"):
        TrainConfig(model="bcresnet", model_params={"bcresnet": {"width": 0}})

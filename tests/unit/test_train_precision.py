"""train.precision: fp32 never autocasts; bf16 only where torch reports native support; auto
picks bf16 there and fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from audioclf import runtime
from audioclf.errors import AudioclfError
from audioclf.runtime import use_bf16


def test_precision_fp32_never_autocasts_and_bf16_needs_native_support(monkeypatch):
    cpu = torch.device("cpu")
    assert not use_bf16("fp32", cpu)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    assert not use_bf16("auto", cpu)
    with pytest.raises(AudioclfError, match=r"train\.precision is bf16"):
        use_bf16("bf16", cpu)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    assert use_bf16("auto", cpu) and use_bf16("bf16", cpu)

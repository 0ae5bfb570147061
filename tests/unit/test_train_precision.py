"""train.precision: fp32 never autocasts; bf16 only where torch reports native support; auto
picks bf16 there and fp32 elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioclf import runtime, training
from audioclf.errors import AudioclfError
from audioclf.runtime import use_bf16
from audioclf.training import train_model
from tests.helpers import tiny_cache, tiny_cfg

CPU = torch.device("cpu")


def test_precision_fp32_never_autocasts_and_bf16_needs_native_support(monkeypatch):
    cpu = torch.device("cpu")
    assert not use_bf16("fp32", cpu)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    assert not use_bf16("auto", cpu)
    with pytest.raises(AudioclfError, match=r"train\.precision is bf16"):
        use_bf16("bf16", cpu)
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    assert use_bf16("auto", cpu) and use_bf16("bf16", cpu)


@pytest.mark.usefixtures("one_torch_thread")
def test_bf16_training_autocasts_the_forward_pass_keeps_fp32_weights_and_still_learns(monkeypatch):
    """Runs on any CPU: torch autocasts to bf16 on every CPU (emulated and slower where not native),
    so this checks the bf16 path itself; `cpu_bf16_supported` is what decides whether to take it."""
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    x, y = tiny_cache()
    train, val = np.arange(28), np.arange(28, 40)
    fp32 = train_model(x, y, train, val, list("abcd"), tiny_cfg(epochs=6), CPU, progress=False)

    conv_out_dtypes: set[torch.dtype] = set()
    real_step = training.train_step

    def step_watching_the_first_conv(run, state, net, *args):
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        handle = conv.register_forward_hook(lambda _m, _i, out: conv_out_dtypes.add(out.dtype))
        try:
            return real_step(run, state, net, *args)
        finally:
            handle.remove()

    monkeypatch.setattr(training, "train_step", step_watching_the_first_conv)
    bf16 = train_model(x, y, train, val, list("abcd"), tiny_cfg(epochs=6, precision="bf16"), CPU, progress=False)
    assert conv_out_dtypes == {torch.bfloat16}  # every training step ran its convolutions in bf16
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # the weights stay fp32
    assert bf16.best_val_f1 > 0.6
    a, b = fp32.model.state_dict(), bf16.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())  # not the fp32 run

"""The training recipe on a tiny synthetic cache: device choice, normalisation, augmentation,
schedules, early stopping, freezing, determinism and that the model actually learns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from audioclf.config import AugmentConfig
from audioclf.errors import AudioclfError
from audioclf.metrics import macro_f1
from audioclf.models.convnet import ConvNetParams
from audioclf.network import build_model
from audioclf.runtime import configure_threads, select_device
from audioclf.training import (
    _make_scheduler,
    fit_normalization,
    predict_logits,
    spec_augment,
    steps_per_epoch,
    train_model,
)
from tests.helpers import tiny_cache, tiny_cfg

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # bit-identical reruns, no fighting over cores


def test_auto_device_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("auto") == torch.device("cuda", 0)
    assert select_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert select_device("cpu") == CPU
    with pytest.raises(AudioclfError, match=r"runtime\.nproc"):
        select_device("auto", local_rank=2)  # a third rank would share a GPU: NCCL refuses


def test_auto_device_falls_back_to_cpu_and_cuda_without_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == CPU
    with pytest.raises(AudioclfError, match=r"runtime\.device"):
        select_device("cuda")


def test_threads_default_to_the_cores_shared_among_ranks(monkeypatch):
    monkeypatch.setattr("audioclf.runtime.available_cores", lambda: 8)
    assert configure_threads(0) == 8 and torch.get_num_threads() == 8
    assert configure_threads(0, processes=4) == 2
    assert configure_threads(3) == 3


def test_normalisation_is_fitted_on_the_given_rows_only():
    x, _ = tiny_cache()
    rows = np.arange(0, 40, 3)
    mean, std = fit_normalization(x, rows, chunk=5)
    sub = x[rows].astype(np.float64)
    np.testing.assert_allclose(mean, sub.mean(axis=(0, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, sub.std(axis=(0, 3)), rtol=1e-4)
    assert mean.shape == (1, 16)


def test_spec_augment_masks_and_shifts_but_keeps_shape():
    x = torch.ones(4, 2, 16, 20)
    cfg = AugmentConfig(time_shift=0.2, freq_masks=2, time_masks=2, mask_frac=0.2)
    out = spec_augment(x, cfg, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert 0.0 < float((out == 0).float().mean()) < 0.6
    # masks span whole rows/columns and both channels alike
    assert torch.equal(out[:, 0], out[:, 1])
    none = AugmentConfig(time_shift=0.0, freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(x, none, torch.Generator()), x)


@pytest.mark.parametrize("scheduler", ["onecycle", "warmup_linear"])
def test_schedules_warm_up_then_decay(scheduler):
    cfg = tiny_cfg(scheduler=scheduler, warmup_frac=0.2, lr=1.0)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = _make_scheduler(cfg, opt, 50)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 5 <= peak <= 12 and max(lrs) == pytest.approx(1.0, rel=0.05)
    assert lrs[0] < 0.3 and lrs[-1] < 0.05


def test_steps_per_epoch_keep_the_global_batch_under_ddp():
    from audioclf.distributed import DistContext

    assert steps_per_epoch(40, 8) == 5
    assert steps_per_epoch(40, 8, DistContext(0, 2, 0)) == 5  # 20 rows per rank, 4 per step
    assert steps_per_epoch(41, 8) == 5  # a trailing single row joins the last batch


def test_training_learns_and_ships_the_best_epoch():
    x, y = tiny_cache()
    train, val = np.arange(0, 28), np.arange(28, 40)
    seen = []
    result = train_model(x, y, train, val, list("abcd"), tiny_cfg(epochs=6), CPU, on_epoch=seen.append, progress=False)
    assert [s.epoch for s in seen] == list(range(1, 7))
    assert result.best_val_f1 == max(s.val_f1_macro for s in result.history) > 0.6
    shipped = macro_f1(y[val], predict_logits(result.model, x, val, CPU).argmax(1), 4)
    assert shipped == pytest.approx(result.best_val_f1)
    assert max(s.train_f1_macro for s in result.history) > 0.6  # scored on the (augmented) training batches
    assert 0.0 < result.timing.data_fraction < 1.0 and result.timing.steps == 6 * 4


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    x, y = tiny_cache()
    # lr ~ 0 so nothing improves after epoch 1
    result = train_model(
        x, y, np.arange(28), np.arange(28, 40), list("abcd"), tiny_cfg(epochs=10, patience=2, lr=1e-9), CPU,
        progress=False,
    )  # fmt: skip
    assert len(result.history) == 3 and result.best_epoch == 1


def test_keep_last_trains_every_epoch_and_keeps_the_final_weights():
    x, y = tiny_cache()
    seen: list[int] = []
    # the same no-progress run as above: keep=last ignores patience and ships epoch 10, not epoch 1
    result = train_model(
        x, y, np.arange(28), np.arange(28, 40), list("abcd"),
        tiny_cfg(epochs=10, patience=2, lr=1e-9, keep="last"), CPU, progress=False,
        on_epoch=lambda s: seen.append(s.epoch),
    )  # fmt: skip
    assert seen == list(range(1, 11)) and result.best_epoch == 10
    assert result.best_val_f1 == result.history[-1].val_f1_macro
    final = {k: v.clone() for k, v in result.model.state_dict().items()}
    shipped = macro_f1(y[28:], predict_logits(result.model, x, np.arange(28, 40), CPU).argmax(1), 4)
    assert shipped == pytest.approx(result.history[-1].val_f1_macro)
    assert all(torch.equal(final[k], v) for k, v in result.best_state.items())


def test_include_val_trains_on_the_val_rows_too():
    x, y = tiny_cache()
    train, val = np.arange(28), np.arange(28, 40)
    cfg = tiny_cfg(epochs=1, keep="last")
    alone = train_model(x, y, train, val, list("abcd"), cfg, CPU, progress=False)
    final = train_model(x, y, train, val, list("abcd"), dataclasses.replace(cfg, include_val=True), CPU, progress=False)
    mean = lambda rows: x[rows].astype(np.float32).mean(axis=(0, 3))[:, :, None]  # noqa: E731
    # the normalisation (fitted on the rows it learns from) and the steps show which rows trained
    assert torch.allclose(alone.model.mean.squeeze(0), torch.from_numpy(mean(train)), atol=1e-3)
    assert torch.allclose(final.model.mean.squeeze(0), torch.from_numpy(mean(np.arange(40))), atol=1e-3)
    assert final.timing.steps > alone.timing.steps


def test_two_runs_with_the_same_params_are_identical():
    x, y = tiny_cache()
    cfg = tiny_cfg(augment=AugmentConfig(mixup_alpha=0.4), class_weights=True, scheduler="warmup_linear")
    a = train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), cfg, CPU, progress=False)
    b = train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), cfg, CPU, progress=False)
    assert [dataclasses.asdict(h) for h in a.history] == [dataclasses.asdict(h) for h in b.history]
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_augmentation_is_off_at_evaluation():
    x, y = tiny_cache()
    cfg = tiny_cfg(epochs=1, augment=AugmentConfig(time_shift=0.5, freq_masks=3, mixup_alpha=1.0))
    result = train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), cfg, CPU, progress=False)
    rows = np.arange(28, 40)
    result.model.train()  # predict_logits must switch to eval mode itself (no dropout, BN running stats)
    got = predict_logits(result.model, x, rows, CPU)
    assert not result.model.training
    with torch.no_grad():
        feats = torch.from_numpy(np.asarray(x[rows], dtype=np.float32))
        plain = result.model(feats).numpy()
        normed = (feats - result.model.mean) / result.model.std
        augmented = result.model.net(spec_augment(normed, cfg.augment, torch.Generator().manual_seed(0))).numpy()
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, augmented, atol=1e-3)  # augmentation would have changed the logits


def test_freeze_epochs_train_only_the_head_first():
    x, y = tiny_cache()
    cfg = tiny_cfg(epochs=1, freeze_epochs=1)
    result = train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), cfg, CPU, progress=False)
    torch.manual_seed(cfg.seed)  # train_model's initial weights
    init = build_model("convnet", 1, 4, torch.zeros(1, 16), torch.ones(1, 16), ConvNetParams([4, 8], 0.2))
    for p, p0 in zip(result.model.net.features.parameters(), init.net.features.parameters(), strict=True):
        assert torch.equal(p, p0)
    assert not torch.equal(result.model.net.head[-1].weight, init.net.head[-1].weight)
    assert all(p.requires_grad for p in result.model.parameters())


def test_the_optimizer_choice_is_real():
    from audioclf.training import make_optimizer

    net = build_model("convnet", 1, 4, torch.zeros(1, 16), torch.ones(1, 16), ConvNetParams([4], 0.0))
    sgd = make_optimizer(tiny_cfg(optimizer="sgd", lr=0.05), net)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert isinstance(make_optimizer(tiny_cfg(), net), torch.optim.AdamW)
    x, y = tiny_cache()
    a = train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), tiny_cfg(epochs=2), CPU, progress=False)
    b = train_model(
        x, y, np.arange(28), np.arange(28, 40), list("abcd"), tiny_cfg(epochs=2, optimizer="sgd"), CPU, progress=False
    )
    assert a.history[-1].train_loss != b.history[-1].train_loss  # the choice reaches training


def test_the_checkpoint_holds_exactly_its_declared_keys(tmp_path):
    from audioclf.checkpoint import CHECKPOINT_KEYS, CHECKPOINT_NAME, is_checkpoint

    x, y = tiny_cache()
    train_model(x, y, np.arange(28), np.arange(28, 40), list("abcd"), tiny_cfg(epochs=1), CPU, tmp_path, progress=False)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert list(saved) == list(CHECKPOINT_KEYS) and is_checkpoint(saved) and saved["epoch"] == 1

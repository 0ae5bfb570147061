"""Bad params: unknown keys, wrong types, out-of-range and inconsistent values, unknown model or
feature kind. Each stops the stage before any work with one line naming the param and the fix;
AUDIOCLF_DEBUG=1 shows the traceback instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from audioclf.errors import AudioclfError
from tests.robustness.bad_inputs import cli, good_clips, one_line_error, write_raw

CASES = [  # (params blocks, stage, what the one line must say)
    ({"train": {"epochz": 3}}, "split", r"`train\.epochz` is not a known key; known keys of `train`: model, "),
    ({"trian": {"epochs": 3}}, "split", r"`trian` is not a known block; known blocks: data, split"),
    ({"train": {"epochs": "ten"}}, "split", r"`train\.epochs` must be int, got 'ten'"),
    ({"train": {"lr": True}}, "split", r"`train\.lr` must be float, got True"),
    ({"features": {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 200}}, "split",
     r"`features\.n_mels` must be in 1\.\.129 .*raise"),
    ({"features": {"win_length": 256, "hop_length": 300}}, "split", r"`features\.hop_length` must be in 1\.\."),
    ({"features": {"n_fft": 256, "win_length": 400}}, "split", r"`features\.win_length` must be in 1\.\.n_fft \(256\)"),
    ({"train": {"epochs": -1}}, "split", r"`train\.epochs` must be >= 1, got -1"),
    ({"train": {"batch_size": 0}}, "split", r"`train\.batch_size` must be >= 1, got 0"),
    ({"train": {"model": "transformer"}}, "split", r"`train\.model` is 'transformer'; choose one of bcresnet, convnet"),
    ({"features": {"kind": "wavelet"}}, "split", r"`features\.kind` must be one of 'logmel' \| 'mfcc'"),
    ({"features": {"on_bad_audio": "ignore"}}, "split", r"`features\.on_bad_audio` must be one of 'skip' \| 'fail'"),
    ({"features": {"max_skipped_frac": 1.5}}, "split", r"`features\.max_skipped_frac` must be in \[0, 1\], got 1\.5"),
    ({"split": {"test_fold": 4, "val_fold": 4}}, "split", r"`split\.val_fold` must differ from split\.test_fold"),
    ({"data": {"sample_rate": 100}}, "split", r"`data\.sample_rate` must be in 1000\.\.192000 Hz or auto"),
    ({"runtime": {"workers": -2}}, "split", r"`runtime\.workers` must be >= 0"),
    ({"split": {"strategy": "folds", "test_fold": 9, "val_fold": 1}}, "split",
     r"`split\.test_fold` is 9, but the selected rows have folds \[1, 2, 3, 4, 5\]; pick one of those"),
    ({"features": {"f_max": 12000.0}}, "features", r"`features\.f_max` 12000 Hz is above the Nyquist"),
    ({"data": {"duration_s": 0.05, "sample_rate": 8000}, "features": {"n_fft": 1024, "win_length": 1024}},
     "features", r"`data\.duration_s` gives 400 samples at 8000 Hz, not more than half of features\.n_fft \(1024\)"),
]  # fmt: skip


def _project(tmp_path: Path, blocks: dict) -> list[str]:
    raw = tmp_path / "raw"
    write_raw(raw, good_clips(raw, 5))
    params = {"data": {"sample_rate": 16000, "duration_s": 0.25}, "runtime": {"workers": 1}}
    for block, values in blocks.items():
        params.setdefault(block, {}).update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / "params.yaml")]


@pytest.mark.parametrize("blocks, stage, expected", CASES, ids=[re.sub(r"\W+", "_", c[2])[:40] for c in CASES])
def test_bad_params_stop_with_one_line(tmp_path: Path, capsys, blocks: dict, stage: str, expected: str) -> None:
    argv = _project(tmp_path, blocks)
    raw = tmp_path / "raw"
    args = ["--metadata", str(raw / "metadata.csv")] if stage == "split" else ["--raw", str(raw)]
    code, err = cli(["stage", stage, *argv, *args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    line = one_line_error(err)
    assert re.search(expected, line), line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_a_params_file_that_is_not_yaml_or_missing(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  epochs: [3\n")
    code, err = cli(["stage", "split", "--params", str(tmp_path / "params.yaml")], capsys)
    assert code == 2 and "params.yaml: not valid YAML" in one_line_error(err)
    code, err = cli(["stage", "split", "--params", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "nope.yaml: not found; run from the project root or pass --params PATH" in one_line_error(err)


def test_audioclf_debug_shows_the_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    argv = _project(tmp_path, {"train": {"epochs": 0}})
    monkeypatch.setenv("AUDIOCLF_DEBUG", "1")
    with pytest.raises(AudioclfError, match=r"train\.epochs"):
        cli(["stage", "split", *argv, "--metadata", str(tmp_path / "raw" / "metadata.csv")], capsys)


def test_the_new_params_are_declared_for_the_features_stage() -> None:
    from audioclf.config import STAGE_PARAMS
    from tests.helpers import REPO

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())["features"]
    for key in ("on_bad_audio", "max_skipped_frac"):
        assert f"features.{key}" in STAGE_PARAMS["features"] and f"features.{key}" in stages["features"]["params"]
        assert key in params


def test_a_train_split_of_one_clip_is_refused(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    argv = _project(tmp_path, {"split": {"strategy": "folds", "test_fold": 3, "val_fold": 2}})
    write_raw(raw, good_clips(raw, 3)[:3])  # folds 1, 2, 3: one row each, so train (fold 1) has 1
    code, err = cli(["stage", "split", *argv, "--metadata", str(raw / "metadata.csv"), "--out", str(tmp_path / "o")],
                    capsys)  # fmt: skip
    assert code == 2 and "the train split has 1 clip; training needs at least 2" in one_line_error(err)


def test_a_one_step_warm_up_trains(tmp_path: Path) -> None:
    """36 rows, batch 8, 2 epochs = 10 steps: warmup_frac 0.1 is exactly one step, where
    OneCycleLR divided by zero."""
    import torch

    from audioclf.stages import train
    from tests.helpers import write_tiny_project

    threads = torch.get_num_threads()
    try:
        train.main(write_tiny_project(tmp_path, epochs=2, warmup_frac=0.1))
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "models" / "model.pt").is_file()


def test_a_learning_rate_that_makes_training_diverge_stops_it_without_a_model(tmp_path: Path, capsys) -> None:
    """lr 1e8 turns the weights into NaN within an epoch: that must not be shipped as a model."""
    import torch

    from tests.helpers import write_tiny_project

    argv = write_tiny_project(tmp_path, epochs=3, lr=1e8, grad_clip=None)
    threads = torch.get_num_threads()
    try:
        code, err = cli(["stage", "train", *argv], capsys)
    finally:
        torch.set_num_threads(threads)
    line = next(line for line in err.splitlines() if "audioclf: error:" in line)
    assert code == 2 and "the loss became nan in epoch 1 (training diverged); lower train.lr (1e+08)" in line
    assert not (tmp_path / "models" / "model.pt").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["stage", "features", "--bogus"], "audioclf stage features: unrecognized arguments: --bogus; run `audioclf"),
        (["predict"], "name at least one PATH (a file, a folder, or - for stdin), or pass --stream"),
        (["predict", "x.wav", "--top-k", "many"], "argument --top-k: invalid int value: 'many'"),
        (["stage", "fetaures"], "audioclf stage: name one of download, split, features"),
    ],
)
def test_bad_command_lines_print_one_line(capsys, argv: list[str], expected: str) -> None:
    code, err = cli(argv, capsys)
    assert code == 2 and expected in one_line_error(err)

"""The model card: what it says, and the git provenance it records."""

import subprocess

import pytest

from audioclf import modelcard


def _inputs(**overrides):
    base = {
        "dataset": "esc50",
        "classes": ["dog", "rain"],
        "split_sizes": {"train": 8, "val": 2, "test": 4},
        "split_folds": {"train": [1, 2, 3], "val": [4], "test": [5]},
        "sample_rate": 22050,
        "duration_s": 5.0,
        "architecture": "convnet",
        "train": {"epochs": 4, "lr": 0.003},
        "features": {"n_mels": 64},
        "best_epoch": 3,
        "best_val_f1": 0.7,
        "quantize": {"deploy": "int8_static"},
        "per_class": {
            "dog": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
            "rain": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2},
        },
        "variants": {
            "fp32": {"size_mb": 1.2, "accuracy": 0.75, "f1_macro": 0.7333, "f1_drop": 0.0},
            "int8_static": {"size_mb": 0.4, "accuracy": 0.75, "f1_macro": 0.7333, "f1_drop": 0.0},
        },
        "deployed": "int8_static",
        "commit": "abc123",
        "confusion_png": "model-card-confusion.png",
    }
    return modelcard.CardInputs(**{**base, **overrides})


def test_card_names_data_licence_split_results_and_limits():
    card = modelcard.render(_inputs())
    assert "ESC-50" in card and "CC BY-NC 3.0: non-commercial" in card
    assert "`dog`, `rain`" in card and "- train: 8 clips (folds 1, 2, 3)" in card and "- test: 4 clips (fold 5)" in card
    assert "22050 Hz, 5 s" in card and "float32 [batch, 110250]" in card
    assert "| dog | 1.0000 | 0.5000 | 0.6667 | 2 |" in card
    assert "| **int8_static** (deployed) | 0.4000 |" in card and "| fp32 | 1.2000 |" in card
    assert "hardest classes on the test split: `dog` (F1 0.667)" in card
    assert "Git commit the run started from: abc123." in card and "| `train.lr` | `0.003` |" in card
    assert "Best epoch 3 of 4 (validation macro-F1 0.7000)" in card and "| `features.n_mels` | `64` |" in card


def test_user_data_asks_for_its_licence():
    assert "yours: state it here" in modelcard.render(_inputs(dataset="folder"))


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_provenance_is_the_commit_and_flags_edited_code_but_not_pipeline_outputs(tmp_path):
    assert modelcard.git_provenance(tmp_path).startswith("unknown (not run from a git commit)")
    _git(tmp_path, "init", "-q")
    for name in ("params.yaml", "dvc.lock"):
        (tmp_path / name).write_text("a: 1\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text("{}\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "dvc.lock").write_text("a: 2\n")  # the pipeline rewrites these during a run
    (tmp_path / "metrics" / "eval.json").write_text('{"x": 1}\n')
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert modelcard.git_provenance(tmp_path) == sha
    (tmp_path / "params.yaml").write_text("a: 3\n")  # e.g. `dvc exp run -S`
    assert modelcard.git_provenance(tmp_path) == f"{sha} (dirty: params.yaml differed from that commit)"


@pytest.mark.parametrize("dataset", sorted(modelcard.DATASETS))
def test_every_corpus_has_a_licence_line(dataset):
    from audioclf.config import DATASETS

    assert dataset in DATASETS and modelcard.DATASETS[dataset][1]

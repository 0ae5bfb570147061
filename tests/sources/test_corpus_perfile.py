"""ESC-50 and FSDD (one request per file) from a fixture mirror: download → split → features."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclf.errors import AudioclfError
from audioclf.split import shared_groups
from tests.sources.corpus_mirror import build_esc50, build_fsdd, check_outputs, run_download, run_stages
from tests.sources.mirror_server import MirrorServer


def test_esc50_end_to_end(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    build_esc50(mirror_root)
    data = {"dataset": "esc50", "source": mirror.url, "classes": ["dog", "rooster", "cow"]}
    out = run_stages(tmp_path, data, {"strategy": "folds", "test_fold": 5, "val_fold": 4})
    check_outputs(out, n=33, sample_rate=44_100, duration_s=5.0)
    assert not [p for p in mirror.hits if p.endswith("-10.wav")]  # rain was not selected: never requested
    assert set(out["splits"]["test"]["fold"]) == {5} and set(out["splits"]["val"]["fold"]) == {4}
    meta = out["meta"]
    real = meta[meta["path"] == "audio/2-103426-A-3.wav"].iloc[0]
    assert (real["label"], real["group"], real["take"]) == ("cow", "103426", "A")
    assert out["features"]["classes"] == ["cow", "dog", "rooster"]

    # a rerun fetches nothing; a narrower selection prunes
    hits = sum(mirror.hits.values())
    run_download(tmp_path, {**data, "classes": ["dog", "cow"]})
    assert sum(mirror.hits.values()) == hits + 1  # the metadata CSV only
    assert not [p for p in (out["raw"] / "audio").iterdir() if p.name.endswith("-1.wav")]


def test_esc50_unknown_class_lists_valid_names_before_any_request(tmp_path: Path, mirror: MirrorServer) -> None:
    with pytest.raises(AudioclfError, match=r"data\.classes.*\['dgo'\].*valid names: dog, rooster"):
        run_download(tmp_path, {"dataset": "esc50", "source": mirror.url, "classes": ["dog", "dgo"]})
    assert not mirror.hits


def test_esc50_caps_and_folds(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    build_esc50(mirror_root)
    raw = run_download(
        tmp_path, {"dataset": "esc50", "source": mirror.url, "classes": ["dog", "rooster"], "max_per_class": 5}
    )
    import pandas as pd

    meta = pd.read_csv(raw / "metadata.csv")
    assert meta["label"].value_counts().to_dict() == {"dog": 5, "rooster": 5}
    assert set(meta.groupby("label")["fold"].nunique()) == {5}  # a cap keeps every fold
    raw = run_download(
        tmp_path, {"dataset": "esc50", "source": mirror.url, "classes": ["dog", "cow"], "folds": [1, 2], "max_total": 7}
    )
    meta = pd.read_csv(raw / "metadata.csv")
    assert len(meta) == 7 and set(meta["fold"]) <= {1, 2}
    with pytest.raises(AudioclfError, match=r"data\.folds.*\[9\].*valid folds"):
        run_download(tmp_path, {"dataset": "esc50", "source": mirror.url, "folds": [1, 9]})


def test_fsdd_end_to_end_group_split_and_the_official_leak(tmp_path: Path, mirror: MirrorServer, mirror_root: Path):
    build_fsdd(mirror_root, digits=("0", "1", "2"), takes=15)
    data = {"dataset": "fsdd", "source": mirror.url, "classes": [0, 1, 2], "folds": [1, 2, 3]}
    out = run_stages(tmp_path, data, {"strategy": "group", "test_frac": 0.2, "val_frac": 0.2, "seed": 0})
    check_outputs(out, n=270, sample_rate=8_000, duration_s=1.0)
    assert out["features"]["classes"] == ["0", "1", "2"]
    assert shared_groups(out["splits"]) == set()  # no speaker in two splits

    from audioclf.config import SplitConfig
    from audioclf.split import make_splits

    official = make_splits(out["meta"], SplitConfig(strategy="folds", test_fold=1, val_fold=2))
    assert set(official["test"]["take"].astype(int)) == set(range(5))  # the official test = takes 0-4
    assert shared_groups(official) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}


def test_fsdd_file_url_mirror(tmp_path: Path, mirror_root: Path) -> None:
    build_fsdd(mirror_root, digits=("3", "4"), takes=5)
    raw = run_download(
        tmp_path, {"dataset": "fsdd", "source": mirror_root.as_uri(), "classes": ["3", "4"], "folds": [1]}
    )
    assert len(list((raw / "audio").iterdir())) == 2 * 6 * 5

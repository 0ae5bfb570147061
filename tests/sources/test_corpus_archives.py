"""UrbanSound8K and Speech Commands (one archive each) from a fixture mirror: resumable archive
download, member extraction of the selection only, extracted trees, download → split → features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from audioclf.errors import AudioclfError
from audioclf.split import shared_groups
from tests.sources.corpus_mirror import (
    audio_files,
    build_speechcommands,
    build_us8k,
    check_outputs,
    make_tar,
    run_download,
    run_stages,
)
from tests.sources.mirror_server import MirrorServer

US8K = "UrbanSound8K.tar.gz"


@pytest.fixture
def us8k_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "us8k-tree"
    build_us8k(tree)
    return tree


@pytest.fixture
def us8k_mirror(us8k_tree: Path, mirror_root: Path) -> Path:
    return make_tar(us8k_tree, mirror_root / US8K)  # members UrbanSound8K/..., as upstream


def test_urbansound8k_end_to_end_with_resume(tmp_path: Path, mirror: MirrorServer, us8k_mirror: Path) -> None:
    mirror.fail(US8K, "drop", "drop")  # the archive download is cut twice and resumes with Range
    data = {"dataset": "urbansound8k", "source": mirror.url, "classes": ["dog_bark", "siren"], "retries": 1}
    out = run_stages(tmp_path, data, {"strategy": "folds", "test_fold": 5, "val_fold": 4})
    check_outputs(out, n=20, sample_rate=22_050, duration_s=4.0)  # 48/96 kHz, stereo, 24-bit, float, u8
    assert len(mirror.range_headers) == 2
    assert audio_files(out["raw"])[0] == "audio/fold1/10310-3-0-0.wav"
    assert set(out["meta"]["label"]) == {"dog_bark", "siren"}  # street_music stayed in the archive
    assert shared_groups(out["splits"]) == set()  # official folds keep an fsID together
    cached = list((tmp_path / "cache" / "archives").iterdir())
    assert [p.name.endswith(US8K) for p in cached] == [True]

    # a wider selection later: no new download, no rescan needed, only the new members extracted
    raw = run_download(tmp_path, {**data, "classes": None})
    assert mirror.hits[US8K] == 3
    assert len(audio_files(raw)) == 30


def test_urbansound8k_interrupted_run_resumes_on_rerun(tmp_path: Path, mirror: MirrorServer, us8k_mirror: Path):
    mirror.fail(US8K, "drop")
    data = {"dataset": "urbansound8k", "source": mirror.url + US8K + "?download=1", "retries": 0}  # as Zenodo
    with pytest.raises(AudioclfError, match="closed"):
        run_download(tmp_path, data)
    (part,) = (tmp_path / "cache" / "archives").iterdir()
    have = part.stat().st_size
    assert part.name.endswith(".part") and 0 < have < us8k_mirror.stat().st_size
    run_download(tmp_path, data)
    assert mirror.range_headers == [(US8K, f"bytes={have}-")]  # only the missing tail
    assert len(audio_files(tmp_path / "raw")) == 30


@pytest.mark.parametrize("kind", ["tree", "tree-root", "archive-path", "archive-file-url", "archive-folder"])
def test_urbansound8k_local_sources(tmp_path: Path, us8k_tree: Path, kind: str) -> None:
    archive = make_tar(us8k_tree, tmp_path / "dl" / US8K)
    source = {
        "tree": str(us8k_tree),  # the folder holding UrbanSound8K/
        "tree-root": str(us8k_tree / "UrbanSound8K"),
        "archive-path": str(archive),
        "archive-file-url": archive.as_uri(),
        "archive-folder": str(archive.parent),
    }[kind]
    raw = run_download(tmp_path, {"dataset": "urbansound8k", "source": source, "folds": [1, 2]})
    assert len(audio_files(raw)) == 12
    assert not (tmp_path / "cache" / "archives").exists()  # local archives are read in place


def test_urbansound8k_wrong_source_is_explained(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioclfError, match=r"neither an extracted urbansound8k tree.*UrbanSound8K\.tar\.gz"):
        run_download(tmp_path, {"dataset": "urbansound8k", "source": str(tmp_path / "empty")})
    with pytest.raises(AudioclfError, match=r"data\.version"):
        run_download(tmp_path, {"dataset": "urbansound8k", "source": str(tmp_path / "empty"), "version": "v2"})


def test_metadata_path_escaping_data_raw_is_refused(tmp_path: Path, us8k_tree: Path) -> None:
    csv = us8k_tree / "UrbanSound8K/metadata/UrbanSound8K.csv"
    csv.write_text(csv.read_text().replace("10310-3-0-0.wav", "../../../../evil.wav", 1))
    with pytest.raises(AudioclfError, match=r"escapes the data folder.*on_bad_row is fail"):
        run_download(tmp_path, {"dataset": "urbansound8k", "source": str(us8k_tree), "on_bad_row": "fail"})
    assert not list(tmp_path.rglob("evil.wav"))
    # skip (the default): the row is listed with its reason and kept in metadata.csv under a
    # placeholder path that is never written; the others are fetched
    run_download(tmp_path, {"dataset": "urbansound8k", "source": str(us8k_tree)})
    rejected = pd.read_csv(tmp_path / "raw" / "rejected.csv")
    assert len(rejected) == 1 and "escapes the data folder" in rejected["reason"][0]
    meta = pd.read_csv(tmp_path / "raw" / "metadata.csv")
    assert rejected["path"][0] in set(meta["path"]) and not (tmp_path / "raw" / rejected["path"][0]).exists()
    assert not list(tmp_path.rglob("evil.wav"))


def test_symlinked_folder_inside_raw_is_refused(tmp_path: Path, us8k_tree: Path) -> None:
    (tmp_path / "raw" / "audio").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "raw" / "audio" / "fold1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AudioclfError, match="resolves outside"):
        run_download(tmp_path, {"dataset": "urbansound8k", "source": str(us8k_tree)})
    assert not list((tmp_path / "elsewhere").iterdir())


# -- Speech Commands ---------------------------------------------------------------------------


def sc_archive(tmp_path: Path, dest: Path, **kw) -> dict:
    tree = tmp_path / "sc-tree"
    info = build_speechcommands(tree, **kw)
    make_tar(tree, dest, prefix="./")  # upstream members read ./<word>/<file>
    return info


def test_speechcommands_end_to_end_official_split(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    info = sc_archive(tmp_path, mirror_root / "speech_commands_v0.01.tar.gz")
    data = {"dataset": "speechcommands", "version": "v0.01", "source": mirror.url}
    out = run_stages(tmp_path, data, {"strategy": "folds", "test_fold": 3, "val_fold": 2})
    check_outputs(out, n=info["n"], sample_rate=16_000, duration_s=1.0)
    assert out["features"]["classes"] == ["no", "up", "yes"]  # _background_noise_ is not a class
    assert (len(out["splits"]["val"]), len(out["splits"]["test"])) == (info["val"], info["test"])
    assert set(out["splits"]["test"]["official_split"]) == {"testing"}
    assert shared_groups(out["splits"]) == set()  # the official lists split by speaker


def test_speechcommands_version_and_classes(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    sc_archive(tmp_path, mirror_root / "speech_commands_v0.02.tar.gz", words=("yes", "backward"))
    with pytest.raises(AudioclfError, match=r"valid names: .*backward"):  # checked before the download
        run_download(tmp_path, {"dataset": "speechcommands", "source": mirror.url, "classes": ["yes", "nope"]})
    assert not mirror.hits
    raw = run_download(tmp_path, {"dataset": "speechcommands", "source": mirror.url})  # v0.02 by default
    assert set(pd.read_csv(raw / "metadata.csv")["label"]) == {"yes", "backward"}

    shutil.copy(mirror_root / "speech_commands_v0.02.tar.gz", mirror_root / "speech_commands_v0.01.tar.gz")
    with pytest.raises(AudioclfError, match=r"'backward', which v0\.01 lacks"):
        run_download(tmp_path, {"dataset": "speechcommands", "source": mirror.url, "version": "v0.01"})
    with pytest.raises(AudioclfError, match=r"choose v0\.01 or v0\.02"):
        run_download(tmp_path, {"dataset": "speechcommands", "source": mirror.url, "version": "v3"})


def test_speechcommands_extracted_tree(tmp_path: Path) -> None:
    tree = tmp_path / "sc"
    info = build_speechcommands(tree)
    raw = run_download(tmp_path, {"dataset": "speechcommands", "source": tree.as_uri(), "classes": ["yes", "no"]})
    assert len(audio_files(raw)) == info["n"] * 2 // 3


def test_speechcommands_tree_without_a_list_is_explained(tmp_path: Path) -> None:
    tree = tmp_path / "sc"
    build_speechcommands(tree)
    (tree / "validation_list.txt").unlink()
    with pytest.raises(AudioclfError, match=r"validation_list\.txt is missing; is data\.source really speechcommands"):
        run_download(tmp_path, {"dataset": "speechcommands", "source": str(tree)})

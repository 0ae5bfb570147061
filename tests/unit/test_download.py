import pandas as pd
import pytest

from audioclf.config import DataConfig
from audioclf.download import run_download, safe_relpath, select_rows
from audioclf.errors import AudioclfError
from audioclf.fileio import sha256_file
from audioclf.sources import get_source


def _meta():
    return pd.DataFrame(
        {
            "path": [f"a/{i}.wav" for i in range(12)],
            "label": ["cat", "dog", "owl"] * 4,
            "fold": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4],
            "group": [f"g{i // 3}" for i in range(12)],
        }
    )


def test_select_classes_folds_and_caps():
    meta = _meta()
    out = select_rows(meta, DataConfig(classes=["cat", "owl"], folds=[1, 2, 3]))
    assert set(out["label"]) == {"cat", "owl"} and set(out["fold"]) == {1, 2, 3}
    capped = select_rows(meta, DataConfig(max_per_class=2))
    assert capped["label"].value_counts().to_dict() == {"cat": 2, "dog": 2, "owl": 2}
    total = select_rows(meta, DataConfig(max_total=5))
    assert len(total) == 5 and total["label"].nunique() == 3  # spread over classes, not the head


def test_unknown_class_lists_valid_names_and_empty_selection_fails():
    with pytest.raises(AudioclfError, match="valid names: cat, dog, owl"):
        select_rows(_meta(), DataConfig(classes=["cat", "yak"]))
    with pytest.raises(AudioclfError, match=r"data.folds.*valid folds"):
        select_rows(_meta(), DataConfig(folds=[9]))


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/x.wav", "a/../../x.wav", "C:\\x.wav", ""])
def test_paths_may_not_escape(bad):
    with pytest.raises(AudioclfError):
        safe_relpath(bad)


def test_safe_relpath_normalises():
    assert safe_relpath("a/./b//c.wav") == "a/b/c.wav"
    assert safe_relpath("a\\b.wav") == "a/b.wav"


def test_download_writes_selection_manifest_and_resumes(tmp_path):
    cfg = DataConfig(classes=["knock", "hiss"], synthetic_clips_per_class=5)
    raw = tmp_path / "raw"
    first = run_download(get_source(cfg), raw, workers=2)
    assert (first.selected, first.fetched, first.reused) == (10, 10, 0)
    meta = pd.read_csv(raw / "metadata.csv")
    manifest = pd.read_csv(raw / "manifest.csv")
    assert list(meta.columns[:4]) == ["path", "label", "fold", "group"]
    assert set(manifest["path"]) == set(meta["path"])
    for row in manifest.itertuples():
        assert sha256_file(raw / row.path) == row.sha256 and (raw / row.path).stat().st_size == row.bytes

    # an interrupted run: one file missing, one corrupted, a stale temp file left behind
    (raw / meta["path"][0]).unlink()
    (raw / meta["path"][1]).write_bytes(b"garbage")
    (raw / "audio" / ".x.wav.123.part").write_bytes(b"half")
    again = run_download(get_source(cfg), raw, workers=2)
    assert (again.fetched, again.reused) == (2, 8)
    assert not list(raw.rglob("*.part"))
    assert pd.read_csv(raw / "manifest.csv").equals(manifest)

    # a narrower selection removes the files it no longer uses
    narrow = run_download(get_source(DataConfig(classes=["knock", "hiss"], synthetic_clips_per_class=5,
                                                 max_per_class=2)), raw, workers=1)  # fmt: skip
    assert narrow.removed == 6 and len(list(raw.rglob("*.wav"))) == 4

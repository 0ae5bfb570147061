"""`folder` and `csv`: the user's own recordings, in odd but decodable formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclf.errors import AudioclfError
from audioclf.split import shared_groups
from tests.sources.corpus_mirror import audio_files, check_outputs, run_download, run_stages, tone, write_csv
from tests.sources.mirror_server import MirrorServer

FORMATS = (  # what people record with: (suffix, sample rate, channels, soundfile kwargs)
    (".wav", 16_000, 1, {"subtype": "PCM_16"}),
    (".wav", 48_000, 2, {"subtype": "PCM_24"}),
    (".wav", 44_100, 1, {"subtype": "FLOAT"}),
    (".flac", 22_050, 2, {"format": "FLAC"}),
    (".ogg", 32_000, 1, {"format": "OGG", "subtype": "VORBIS"}),
)


def build_languages(root: Path, speakers: int = 5, per_speaker: int = 2) -> int:
    """One folder per language, file names <speaker>_<n>.<ext>, one format per speaker."""
    n = 0
    for lang_i, lang in enumerate(("de", "en", "fr")):
        for s in range(speakers):
            suffix, rate, channels, kw = FORMATS[s % len(FORMATS)]
            for k in range(per_speaker):
                sub = "session2/" if k % 2 else ""  # nested folders are fine
                tone(
                    root / lang / f"{sub}spk{s}_{k}{suffix}",
                    rate,
                    seed=100 * lang_i + 10 * s + k,
                    channels=channels,
                    **kw,
                )
                n += 1
    (root / "README.txt").write_text("not a class\n")
    (root / "en" / "notes.txt").write_text("not audio\n")
    return n


def test_folder_end_to_end_grouped_by_speaker(tmp_path: Path) -> None:
    root = tmp_path / "langs"
    n = build_languages(root)
    data = {"dataset": "folder", "source": str(root), "group_regex": r"^(spk\d+)_"}
    out = run_stages(tmp_path, data, {"strategy": "group", "test_frac": 0.2, "val_frac": 0.2})
    check_outputs(out, n=n, sample_rate=16_000, duration_s=5.0)
    assert out["features"]["classes"] == ["de", "en", "fr"]
    assert set(out["meta"]["group"]) == {f"spk{s}" for s in range(5)}
    assert shared_groups(out["splits"]) == set()
    assert "audio/en/session2/spk3_1.flac" in set(out["meta"]["path"])


def test_folder_file_url_http_refused_and_regex_errors(tmp_path: Path, mirror: MirrorServer) -> None:
    root = tmp_path / "langs"
    n = build_languages(root, speakers=2)
    raw = run_download(tmp_path, {"dataset": "folder", "source": root.as_uri()})
    assert len(audio_files(raw)) == n
    with pytest.raises(AudioclfError, match=r"local path or file://.*data\.dataset: csv"):
        run_download(tmp_path, {"dataset": "folder", "source": mirror.url})
    with pytest.raises(AudioclfError, match=r"spk0_\d\.wav: data\.group_regex '\^x' does not match"):
        run_download(tmp_path, {"dataset": "folder", "source": str(root), "group_regex": "^x"})
    with pytest.raises(AudioclfError, match=r"data\.group_regex.*not a valid regular expression"):
        run_download(tmp_path, {"dataset": "folder", "source": str(root), "group_regex": "(unclosed"})


def test_csv_with_relative_paths_urls_and_column_params(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path
) -> None:
    rows = []
    for i in range(12):
        label = ("cat", "dog", "owl")[i % 3]
        suffix, rate, channels, kw = FORMATS[i % len(FORMATS)]
        if i % 2:  # half as URLs on the HTTP mirror (equal names in different folders)
            tone(mirror_root / f"set{i % 4}" / f"clip{i % 3}{suffix}", rate, seed=i, channels=channels, **kw)
            where = f"{mirror.url}set{i % 4}/clip{i % 3}{suffix}"
        else:  # half relative to the CSV, served from the same mirror
            tone(mirror_root / "clips" / label / f"{i}{suffix}", rate, seed=i, channels=channels, **kw)
            where = f"clips/{label}/{i}{suffix}"
        rows.append([where, label, 1 + i % 4, f"spk{i % 4}", f"note {i}"])
    write_csv(mirror_root / "mine.csv", ["file", "class", "fold", "speaker", "note"], rows)
    data = {
        "dataset": "csv",
        "source": mirror.url + "mine.csv",
        "csv_path_column": "file",
        "csv_label_column": "class",
        "csv_fold_column": "fold",
        "csv_group_column": "speaker",
    }
    out = run_stages(tmp_path, data, {"strategy": "folds", "test_fold": 4, "val_fold": 3})
    check_outputs(out, n=12, sample_rate=16_000, duration_s=5.0)
    meta = out["meta"]
    assert "audio/clips/cat/0.wav" in set(meta["path"])
    assert meta["note"].tolist()[:2] == ["note 0", "note 1"]  # the user's own columns are kept
    assert set(meta["group"]) == {"spk0", "spk1", "spk2", "spk3"}


def test_csv_errors_name_the_param_or_line(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav", 16_000, seed=0)
    base = {"dataset": "csv", "source": str(write_csv(tmp_path / "l.csv", ["path", "label"], [["a.wav", "x"]]))}
    with pytest.raises(AudioclfError, match=r"data\.csv_label_column.*'class'.*its columns: path, label"):
        run_download(tmp_path, {**base, "csv_label_column": "class"})
    write_csv(tmp_path / "l.csv", ["path", "label"], [["a.wav", "x"], ["../up.wav", "y"]])
    with pytest.raises(AudioclfError, match="may not leave the CSV's folder"):
        run_download(tmp_path, {**base, "on_bad_row": "fail"})
    write_csv(tmp_path / "l.csv", ["path", "label"], [["a.wav", "x"], ["", "y"]])
    with pytest.raises(AudioclfError, match="line 3 has an empty path"):
        run_download(tmp_path, base)
    write_csv(tmp_path / "l.csv", ["path", "label"], [["a.wav", "x"], ["ftp://h/b.wav", "y"]])
    with pytest.raises(AudioclfError, match="scheme 'ftp'"):
        run_download(tmp_path, {**base, "on_bad_row": "fail"})
    write_csv(tmp_path / "l.csv", ["path", "label", "f"], [["a.wav", "x", "one"]])
    with pytest.raises(AudioclfError, match="line 2: column 'f' must hold integer folds"):
        run_download(tmp_path, {**base, "csv_fold_column": "f"})
    with pytest.raises(AudioclfError, match=r"data\.source` is null"):
        run_download(tmp_path, {"dataset": "csv"})

"""Bad audio: every case either decodes to a normal clip (resampled, downmixed, padded/trimmed,
NaN/inf cleaned) or is refused with a one-line reason; downloaded through a real source over the
loopback HTTP mirror, refused files are listed by the download stage and skipped and reported by
the features stage (`features.on_bad_audio`, `features.max_skipped_frac`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioclf.audio import fix_length, load_clip, read_audio, resample
from audioclf.errors import AudioclfError
from audioclf.fetch import InvalidContent, check_audio
from audioclf.stages import download, features
from tests.robustness.bad_inputs import (
    AUDIO_CASES,
    CLIP_S,
    RATE,
    UNUSABLE,
    build_audio,
    good_clips,
    leftovers,
    snapshot,
    write_params,
    write_raw,
)
from tests.sources.corpus_mirror import build_us8k, make_tar
from tests.sources.mirror_server import MirrorServer

N = round(RATE * CLIP_S)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_audio(tmp_path_factory.mktemp("audio"))


@pytest.mark.parametrize("name", sorted(AUDIO_CASES))
def test_each_audio_case_is_normalised_or_refused_in_one_line(audio: dict[str, Path], name: str) -> None:
    path, expected = audio[name], AUDIO_CASES[name][1]
    if expected == "normalised":
        wave = load_clip(path, RATE, N)
        assert wave.shape == (N,) and wave.dtype == np.float32
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
        check_audio(path)  # the download stage keeps what the features stage can use
    else:
        with pytest.raises(AudioclfError) as err:
            load_clip(path, RATE, N)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{path}: ") and expected in message
        with pytest.raises(InvalidContent, match=expected.split("/")[0]):
            check_audio(path)  # ... and refuses what it cannot


def test_a_long_clip_decodes_only_the_frames_it_needs(audio: dict[str, Path]) -> None:
    """A 10-minute clip gives the same samples as decoding the whole file and trimming."""
    path = audio["ten_minutes"]
    for rate, n in ((8_000, 2_000), (16_000, N), (22_050, 22_050)):
        data, orig = read_audio(path)
        whole = fix_length(resample(data[:, 0], orig, rate), n)
        assert np.array_equal(load_clip(path, rate, n), whole)
    nan = load_clip(audio["nan_inf_float"], RATE, N)
    assert np.isfinite(nan).all() and nan.max() == 1.0 and nan.min() == -1.0  # ±inf → ±1, 1e30 clipped


def test_bad_audio_over_http_is_rejected_by_download_and_reported_by_features(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV corpus served over HTTP with every case among 40 good clips: the download keeps the
    decodable ones, lists the others with reasons, and the features stage skips and counts them."""
    cases = build_audio(mirror_root / "clips")
    rows = good_clips(mirror_root / "clips", 20) + [
        (f"{name}.wav", "ab"[i % 2]) for i, name in enumerate(sorted(cases))
    ]
    pd.DataFrame({"file": [p for p, _ in rows], "label": [lb for _, lb in rows]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    params = write_params(
        tmp_path / "params.yaml",
        data={"dataset": "csv", "source": mirror.url + "clips/clips.csv", "csv_path_column": "file", "retries": 0,
              "sample_rate": RATE, "duration_s": CLIP_S},
        features={"max_skipped_frac": 0.2},
    )  # fmt: skip
    raw, out = tmp_path / "data" / "raw", tmp_path / "data" / "features"
    download.main(["--params", str(params), "--out", str(raw), "--cache-dir", str(tmp_path / "cache")])
    summary = capsys.readouterr().out
    assert f"{len(UNUSABLE)} row(s) rejected" in summary

    rejected = pd.read_csv(raw / "rejected.csv")
    assert sorted(rejected["path"]) == [f"audio/{name}.wav" for name in UNUSABLE]
    for path, reason in zip(rejected["path"], rejected["reason"], strict=True):
        name = Path(path).stem
        assert AUDIO_CASES[name][1].split("/")[0] in reason and "\n" not in reason, (name, reason)
        assert not (raw / path).exists()
    manifest = pd.read_csv(raw / "manifest.csv")
    assert len(manifest) == len(rows) - len(UNUSABLE) and len(pd.read_csv(raw / "metadata.csv")) == len(rows)

    features.main(["--params", str(params), "--raw", str(raw), "--out", str(out)])
    summary = capsys.readouterr().out
    assert f"{len(UNUSABLE)} of {len(rows)} file(s) skipped" in summary and "meta.json" in summary
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(s["path"] for s in meta["skipped"]) == sorted(rejected["path"])
    assert all("download stage rejected it" in s["reason"] for s in meta["skipped"])
    x = np.load(out / "features.npy")
    index = pd.read_csv(out / "index.csv")
    assert x.shape[0] == len(index) == len(rows) - len(UNUSABLE) and np.isfinite(x).all()
    normalised = {f"audio/{n}.wav" for n, (_, e) in AUDIO_CASES.items() if e == "normalised"}
    assert normalised <= set(index["path"])  # every odd-but-decodable file made it
    assert leftovers(tmp_path) == []


def test_unusable_files_from_a_folder_and_from_an_archive_are_rejected_too(tmp_path: Path) -> None:
    # folder: local copies go through the same check
    root = tmp_path / "langs"
    good_clips(root, 3, labels=("en", "de"))
    build_audio(root / "en", ["zero_bytes", "html_as_wav"])
    params = write_params(tmp_path / "p1.yaml", data={"dataset": "folder", "source": str(root)})
    download.main(["--params", str(params), "--out", str(tmp_path / "raw1"), "--cache-dir", str(tmp_path / "c")])
    rejected = pd.read_csv(tmp_path / "raw1" / "rejected.csv")
    assert sorted(rejected["path"]) == ["audio/en/html_as_wav.wav", "audio/en/zero_bytes.wav"]

    # archive: a member that is not audio is that file's problem, not a damaged archive
    tree = tmp_path / "us8k"
    build_us8k(tree)
    bad = next((tree / "UrbanSound8K" / "audio" / "fold1").iterdir())
    bad.write_bytes(b"")
    archive = make_tar(tree, tmp_path / "UrbanSound8K.tar.gz")
    params = write_params(tmp_path / "p2.yaml", data={"dataset": "urbansound8k", "source": str(archive)})
    download.main(["--params", str(params), "--out", str(tmp_path / "raw2"), "--cache-dir", str(tmp_path / "c")])
    rejected = pd.read_csv(tmp_path / "raw2" / "rejected.csv")
    assert rejected["path"].tolist() == [f"audio/fold1/{bad.name}"] and "empty" in rejected["reason"][0]
    assert leftovers(tmp_path) == []


@pytest.fixture
def raw_with_bad(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """data/raw holding 10 good clips, plus the unusable cases that tests add to metadata.csv."""
    raw = tmp_path / "data" / "raw"
    good = good_clips(raw, 5)
    build_audio(raw / "bad", UNUSABLE)
    write_raw(raw, good)
    return raw, good


def _features(tmp_path: Path, raw: Path, **feature_params: object) -> list[str]:
    params = write_params(tmp_path / "params.yaml", features=feature_params)
    return ["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "data" / "features")]


def test_on_bad_audio_fail_stops_at_the_first_file_and_keeps_the_previous_outputs(
    tmp_path: Path, raw_with_bad: tuple[Path, list]
) -> None:
    raw, good = raw_with_bad
    features.main(_features(tmp_path, raw))
    before = snapshot(tmp_path / "data" / "features")
    write_raw(raw, [*good, ("bad/zero_bytes.wav", "a"), ("bad/text_as_wav.wav", "b")])
    with pytest.raises(AudioclfError) as err:
        features.main(_features(tmp_path, raw, on_bad_audio="fail"))
    message = str(err.value)
    assert "\n" not in message and "zero_bytes.wav" in message and "empty" in message
    assert "features.on_bad_audio" in message
    assert snapshot(tmp_path / "data" / "features") == before and leftovers(tmp_path) == []


def test_skipping_more_than_max_skipped_frac_fails_naming_the_param(
    tmp_path: Path, raw_with_bad: tuple[Path, list]
) -> None:
    raw, good = raw_with_bad
    write_raw(raw, [*good, *((f"bad/{n}.wav", "a") for n in UNUSABLE)])
    with pytest.raises(AudioclfError, match=rf"{len(UNUSABLE)} of {len(good) + len(UNUSABLE)} files .* "
                       r"features\.max_skipped_frac") as err:  # fmt: skip
        features.main(_features(tmp_path, raw))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data" / "features" / "meta.json").exists() and leftovers(tmp_path) == []
    features.main(_features(tmp_path, raw, max_skipped_frac=0.5))  # allowed: skipped and listed
    meta = json.loads((tmp_path / "data" / "features" / "meta.json").read_text())
    reasons = {Path(s["path"]).stem: s["reason"] for s in meta["skipped"]}
    assert sorted(reasons) == UNUSABLE
    for name, reason in reasons.items():
        assert AUDIO_CASES[name][1] in reason and not reason.startswith(str(raw)), reason


def test_a_file_missing_from_data_raw_is_skipped_as_not_found(tmp_path: Path, raw_with_bad: tuple[Path, list]) -> None:
    raw, good = raw_with_bad
    (raw / good[0][0]).unlink()
    features.main(_features(tmp_path, raw, max_skipped_frac=0.2))
    meta = json.loads((tmp_path / "data" / "features" / "meta.json").read_text())
    assert meta["skipped"] == [{"path": good[0][0], "reason": f"file not found; not in {raw}"}]


def test_loud_audio_that_overflows_a_float16_spectrogram_names_the_fix(tmp_path: Path) -> None:
    """A linear power spectrogram of a full-scale square wave exceeds float16's 65504."""
    import soundfile as sf

    raw = tmp_path / "data" / "raw"
    good = good_clips(raw, 5)
    square = np.sign(np.sin(2 * np.pi * 50 * np.arange(N) / RATE)).astype(np.float32)
    sf.write(raw / "loud.wav", square, RATE, subtype="PCM_16")
    write_raw(raw, [*good, ("loud.wav", "a")])
    argv = _features(tmp_path, raw, kind="spectrogram", n_fft=1024, win_length=1024, hop_length=512, dtype="float16")
    with pytest.raises(AudioclfError, match=r"loud\.wav: features overflow features\.dtype float16.*float32") as err:
        features.main(argv)
    assert "\n" not in str(err.value) and leftovers(tmp_path) == []
    features.main(_features(tmp_path, raw, kind="spectrogram", n_fft=1024, win_length=1024, hop_length=512,
                            dtype="float32"))  # fmt: skip
    assert np.isfinite(np.load(tmp_path / "data" / "features" / "features.npy")).all()

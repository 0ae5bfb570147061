"""Hostile or broken sources: oversized files and archive members, metadata padded with NUL
bytes, gzip bodies that inflate far past the cap, chunked bodies without a length, a trickle,
HTTP-date Retry-After, and the messages of refused downloads. Every case either works or stops /
rejects with one line, and leaves nothing of the refused content anywhere (data/raw, the archive
cache, the scan index). Peak memory for the same cases at 200 MB is in bench/bench_hostile.py."""

from __future__ import annotations

import io
import tarfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import audioclf.fetch
import audioclf.limits
from audioclf.errors import AudioclfError
from audioclf.fetch import Fetcher, join, retry_after_s
from tests.robustness.bad_inputs import good_clips, leftovers
from tests.sources.corpus_mirror import build_us8k, make_tar, run_download
from tests.sources.mirror_server import MirrorServer

US8K = "UrbanSound8K.tar.gz"
BIG_MEMBER = "UrbanSound8K/audio/fold1/10310-3-0-0.wav"
MB = 1 << 20


def silent_wav(path: Path, mb: float) -> Path:
    """A silent 16-bit WAV of about `mb` MB (compresses ~1000-fold: a small hostile download)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(mb * MB) // 2, np.int16), 16_000, subtype="PCM_16")
    return path


def csv_corpus(mirror_root: Path, n: int = 6) -> list[tuple[str, str]]:
    rows = good_clips(mirror_root / "clips", n)
    pd.DataFrame({"path": [p for p, _ in rows], "label": [lb for _, lb in rows]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    return rows


def nothing_cached(cache: Path) -> bool:
    return not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def rejected(raw: Path) -> dict[str, str]:
    frame = pd.read_csv(raw / "rejected.csv")
    return dict(zip(frame["path"], frame["reason"], strict=True))


# -- size caps: archive members --------------------------------------------------------------


@pytest.fixture
def us8k_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    build_us8k(tree)
    return tree


@pytest.mark.parametrize("where", ["http", "local archive"])
def test_an_oversized_archive_member_is_rejected_unwritten(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, us8k_tree: Path, where: str
) -> None:
    silent_wav(us8k_tree / BIG_MEMBER, 8)  # 8 MB of silence among 100 KB clips
    archive = make_tar(us8k_tree, mirror_root / US8K)
    assert archive.stat().st_size < MB
    source = mirror.url + US8K if where == "http" else str(archive)
    raw = run_download(tmp_path, {"dataset": "urbansound8k", "source": source, "max_file_mb": 1})
    reasons = rejected(raw)
    assert list(reasons) == ["audio/fold1/10310-3-0-0.wav"]
    assert "larger than data.max_file_mb (1 MB)" in next(iter(reasons.values()))
    assert not (raw / "audio/fold1/10310-3-0-0.wav").exists() and len(list(raw.rglob("*.wav"))) == 29
    assert leftovers(tmp_path) == []
    (tmp_path / "strict").mkdir()
    with pytest.raises(AudioclfError, match=r"larger than data\.max_file_mb.*on_bad_row is fail") as err:
        run_download(tmp_path / "strict", {"dataset": "urbansound8k", "source": source, "max_file_mb": 1,
                                           "on_bad_row": "fail"})  # fmt: skip
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("padding, cap, message", [
    (b"\0" * (4 * MB), 1, r"metadata member .*UrbanSound8K\.csv' is larger than data\.max_metadata_mb \(1 MB\)"),
    (b"\0" * 50_000, "auto", r"metadata member .*UrbanSound8K\.csv' holds NUL bytes"),
])  # fmt: skip
def test_an_oversized_or_binary_metadata_member_refuses_the_archive_and_caches_nothing(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, us8k_tree: Path, padding: bytes, cap, message: str
) -> None:
    csv = us8k_tree / "UrbanSound8K/metadata/UrbanSound8K.csv"
    csv.write_bytes(csv.read_bytes() + padding)
    make_tar(us8k_tree, mirror_root / US8K)
    with pytest.raises(AudioclfError, match=message) as err:
        run_download(tmp_path, {"dataset": "urbansound8k", "source": mirror.url + US8K, "max_metadata_mb": cap})
    text = str(err.value)
    assert "\n" not in text and len(text) < 600
    assert ".part" not in text and "rerun" not in text  # the same archive would be refused again
    assert nothing_cached(tmp_path / "cache")  # no archive, no .part, no scan index


def test_an_archive_with_a_path_out_of_the_folder_is_refused_without_misleading_advice(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, us8k_tree: Path
) -> None:
    archive = make_tar(us8k_tree, mirror_root / US8K)
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        evil = tarfile.TarInfo("UrbanSound8K/../../evil.wav")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    with pytest.raises(AudioclfError) as err:
        run_download(tmp_path, {"dataset": "urbansound8k", "source": mirror.url + US8K})
    text = str(err.value)
    assert "points outside the extraction folder" in text and "would be refused again" in text
    assert ".part" not in text and "rerun" not in text
    assert nothing_cached(tmp_path / "cache") and not list(tmp_path.rglob("evil.wav"))


def test_an_interrupted_archive_download_still_resumes_from_its_part(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, us8k_tree: Path
) -> None:
    archive = make_tar(us8k_tree, mirror_root / US8K)
    mirror.fail(US8K, "drop", "drop", "drop", "drop", "drop", "drop")  # more drops than retries
    data = {"dataset": "urbansound8k", "source": mirror.url + US8K, "retries": 0}
    with pytest.raises(AudioclfError, match=r"connection closed after [1-9]\d* of \d+ bytes"):
        run_download(tmp_path, data)
    parts = list((tmp_path / "cache").rglob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < archive.stat().st_size
    mirror._faults.clear()
    raw = run_download(tmp_path, data)
    assert len(list(raw.rglob("*.wav"))) == 30
    assert any(path == US8K and value.startswith("bytes=") for path, value in mirror.range_headers)


# -- size caps and encodings: one request per file -----------------------------------------------


@pytest.mark.parametrize("fault", ["gzip", "chunked", None])
def test_valid_encodings_arrive_byte_for_byte(tmp_path: Path, mirror: MirrorServer, mirror_root: Path, fault) -> None:
    rows = csv_corpus(mirror_root)
    if fault:
        for rel, _ in rows:
            mirror.fail(f"clips/{rel}", fault)
    raw = run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv"})
    for rel, _ in rows:
        assert (raw / "audio" / rel).read_bytes() == (mirror_root / "clips" / rel).read_bytes()
    assert not (raw / "rejected.csv").exists()


@pytest.mark.parametrize("fault", ["gzip", "chunked", None])
def test_an_oversized_body_is_rejected_however_it_is_sent(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, fault
) -> None:
    rows = csv_corpus(mirror_root)
    big = rows[0][0]
    silent_wav(mirror_root / "clips" / big, 6)
    if fault:
        mirror.fail(f"clips/{big}", fault)
    raw = run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "max_file_mb": 1})
    assert list(rejected(raw)) == [f"audio/{big}"] and "larger than data.max_file_mb" in rejected(raw)[f"audio/{big}"]
    assert not (raw / "audio" / big).exists() and leftovers(tmp_path) == []
    assert len(list(raw.rglob("*.wav"))) == len(rows) - 1


def test_an_oversized_file_in_a_local_folder_is_rejected_uncopied(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    good_clips(corpus, 3)
    silent_wav(corpus / "a" / "long.wav", 3)
    raw = run_download(tmp_path, {"dataset": "folder", "source": str(corpus), "max_file_mb": 1})
    assert list(rejected(raw)) == ["audio/a/long.wav"] and not (raw / "audio/a/long.wav").exists()


@pytest.mark.parametrize("case, message", [
    ("nul", "holds NUL bytes"),
    ("gzip_bomb", r"larger than data\.max_metadata_mb \(1 MB\)"),
    ("chunked_bomb", r"larger than data\.max_metadata_mb \(1 MB\)"),
])  # fmt: skip
def test_hostile_metadata_over_http_stops_with_one_line(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, case: str, message: str
) -> None:
    csv_corpus(mirror_root)
    csv = mirror_root / "clips" / "clips.csv"
    padding = b"\0" * 1000 if case == "nul" else b"\n" * (5 * MB)  # blank lines pandas would skip
    csv.write_bytes(csv.read_bytes() + padding)
    if case != "nul":
        mirror.fail("clips/clips.csv", case.removesuffix("_bomb"))
    with pytest.raises(AudioclfError, match=message) as err:
        run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "max_metadata_mb": 1})
    assert "\n" not in str(err.value) and not (tmp_path / "raw" / "metadata.csv").exists()


def test_gzip_encoded_metadata_is_decoded(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    rows = csv_corpus(mirror_root)
    mirror.fail("clips/clips.csv", "gzip")
    raw = run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv"})
    assert len(pd.read_csv(raw / "metadata.csv")) == len(rows)


# -- the stall rule, Retry-After, messages --------------------------------------------------------


@pytest.fixture
def quick_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audioclf.limits, "STALL_WINDOW_S", 0.4)
    monkeypatch.setattr(audioclf.limits, "MIN_BYTES_PER_S", 1000.0)


@pytest.mark.parametrize("what", ["audio", "metadata"])
def test_a_trickle_is_cut_by_the_stall_rule(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, quick_stall: None, what: str
) -> None:
    rows = csv_corpus(mirror_root)
    mirror.fail("clips/clips.csv" if what == "metadata" else f"clips/{rows[0][0]}", "trickle")
    mirror.trickle_s = 0.02  # 50 bytes/s: each read arrives well within data.timeout_s
    started = time.monotonic()
    with pytest.raises(AudioclfError, match=r"stalled: \d+ bytes in the last [\d.]+ s, under the minimum 1000 bytes/s"):
        run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "retries": 0})
    assert time.monotonic() - started < 10
    assert leftovers(tmp_path) == []


def test_a_slow_but_moving_transfer_is_not_a_stall(
    mirror: MirrorServer, mirror_root: Path, quick_stall: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audioclf.limits, "MIN_BYTES_PER_S", 20.0)
    (mirror_root / "blob").write_bytes(b"x" * 1500)
    mirror.fail("blob", "trickle")
    mirror.trickle_s = 0.001  # ~1 kB/s, 50 times the minimum (a loaded machine slows it), for several windows
    f = Fetcher(timeout_s=2, retries=0, progress=False)
    assert f.read_bytes(join(mirror.url, "blob")) == b"x" * 1500


def test_a_drop_reports_the_bytes_that_did_arrive(mirror: MirrorServer, mirror_root: Path, tmp_path: Path) -> None:
    (mirror_root / "big.wav").write_bytes(bytes(range(256)) * 256)  # 64 KiB: the drop comes after 32 KiB
    mirror.fail("big.wav", "drop")
    f = Fetcher(timeout_s=2, retries=0, progress=False)
    with pytest.raises(AudioclfError, match=r"connection closed after 32768 of 65536 bytes"):
        f.fetch_file(join(mirror.url, "big.wav"), tmp_path / "x.wav", validate=None)


def test_an_http_date_retry_after_is_honoured_and_capped(
    mirror: MirrorServer, mirror_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (mirror_root / "m.csv").write_text("path,label\na.wav,x\n")
    f = Fetcher(timeout_s=2, retries=2, progress=False)
    mirror.retry_after_s = 1.5
    mirror.fail("m.csv", "429date")
    started = time.monotonic()
    assert f.read_bytes(join(mirror.url, "m.csv")).startswith(b"path")
    assert time.monotonic() - started >= 0.4  # waited for the date (HTTP-dates have 1 s resolution)
    monkeypatch.setattr(audioclf.fetch, "MAX_BACKOFF_S", 0.3)
    mirror.retry_after_s = 3600
    mirror.fail("m.csv", "429date")
    started = time.monotonic()
    assert f.read_bytes(join(mirror.url, "m.csv")).startswith(b"path")
    assert time.monotonic() - started < 2  # an hour is capped


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ("soon", None), ("", None),
])  # fmt: skip
def test_retry_after_values(value: str, expected) -> None:
    now = pd.Timestamp("2015-10-21 07:27:30", tz="UTC").timestamp()
    assert retry_after_s(value, now=now) == expected


def test_an_unknown_content_encoding_is_one_line() -> None:
    resp = types.SimpleNamespace(headers={"Content-Encoding": "br"})
    with pytest.raises(AudioclfError, match=r"Content-Encoding 'br', which audioclf does not decode"):
        audioclf.fetch._Body(resp, "http://x/y.wav", None, "")  # type: ignore[arg-type]


def test_a_cached_archive_refused_under_a_lower_cap_leaves_the_cache(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, us8k_tree: Path
) -> None:
    csv = us8k_tree / "UrbanSound8K/metadata/UrbanSound8K.csv"
    csv.write_bytes(csv.read_bytes() + b"\n" * (2 * MB))  # blank lines: valid, but over a 1 MB cap
    make_tar(us8k_tree, mirror_root / US8K)
    data = {"dataset": "urbansound8k", "source": mirror.url + US8K}
    run_download(tmp_path, data)
    assert not nothing_cached(tmp_path / "cache")  # the archive and its index are kept for reruns
    with pytest.raises(AudioclfError, match=r"larger than data\.max_metadata_mb \(1 MB\)"):
        run_download(tmp_path, {**data, "max_metadata_mb": 1})
    assert nothing_cached(tmp_path / "cache")

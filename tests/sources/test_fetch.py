"""fetch.py against the local mirror: schemes, retries, timeouts, clear errors, no partial files."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclf.errors import AudioclfError
from audioclf.fetch import Fetcher, check_location, join, local_path, parent
from tests.sources.corpus_mirror import tone
from tests.sources.mirror_server import MirrorServer


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def clip(mirror_root: Path) -> Path:
    return tone(mirror_root / "audio" / "a b.wav", 16_000, seed=1)


@pytest.fixture
def fetcher() -> Fetcher:
    f = Fetcher(timeout_s=0.3, retries=2, progress=False)
    yield f
    f.close()


@pytest.mark.parametrize("uri", ["ftp://host/x.wav", "s3://bucket/x.wav", "gopher://x", ""])
def test_only_http_https_file_and_paths(uri: str) -> None:
    with pytest.raises(AudioclfError, match=r"scheme|empty"):
        check_location(uri)


def test_locations_join_and_resolve(tmp_path: Path) -> None:
    assert join("http://h/base", "audio/a b.wav") == "http://h/base/audio/a%20b.wav"
    assert join("http://h/base/", "audio/x.wav") == "http://h/base/audio/x.wav"
    assert join(tmp_path.as_uri(), "x/y.wav") == str(tmp_path / "x/y.wav")
    assert local_path(tmp_path.as_uri()) == tmp_path
    assert parent("https://h/a/list.csv") == "https://h/a/"
    with pytest.raises(AudioclfError, match="local path"):
        local_path("file://otherhost/x")


def test_fetch_ok_http_file_url_and_path(mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    for i, uri in enumerate([join(mirror.url, "audio/a b.wav"), clip.as_uri(), str(clip)]):
        dest = tmp_path / "out" / f"{i}.wav"
        assert fetcher.fetch_file(uri, dest) == clip.stat().st_size
        assert dest.read_bytes() == clip.read_bytes()
    assert leftovers(tmp_path / "out") == ["0.wav", "1.wav", "2.wav"]


def test_404_is_not_retried(mirror: MirrorServer, fetcher: Fetcher, tmp_path: Path) -> None:
    with pytest.raises(AudioclfError, match=r"HTTP 404.*data\.source"):
        fetcher.fetch_file(join(mirror.url, "audio/missing.wav"), tmp_path / "out" / "m.wav")
    assert mirror.hits["audio/missing.wav"] == 1
    assert leftovers(tmp_path / "out") == []


def test_500_then_success_retries(mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    mirror.fail("audio/a b.wav", "500", "503")
    fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "x.wav")
    assert mirror.hits["audio/a b.wav"] == 3
    assert (tmp_path / "x.wav").read_bytes() == clip.read_bytes()


def test_persistent_500_gives_up_after_retries(mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path):
    mirror.fail("audio/a b.wav", "500", "500", "500", "500")
    with pytest.raises(AudioclfError, match=r"HTTP 500.*after 3 attempt.*data\.retries"):
        fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "out" / "x.wav")
    assert mirror.hits["audio/a b.wav"] == 3
    assert leftovers(tmp_path / "out") == []


def test_connection_closed_mid_body(mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    mirror.fail("audio/a b.wav", "drop")
    fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "x.wav")
    assert mirror.hits["audio/a b.wav"] == 2
    assert (tmp_path / "x.wav").read_bytes() == clip.read_bytes()

    mirror.fail("audio/a b.wav", "drop", "drop", "drop")
    with pytest.raises(AudioclfError, match="closed"):
        fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "out" / "y.wav")
    assert leftovers(tmp_path / "out") == []


def test_response_slower_than_timeout(mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path) -> None:
    mirror.fail("audio/a b.wav", "slow")
    fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "x.wav")  # one timeout, then fine
    assert mirror.hits["audio/a b.wav"] == 2

    mirror.fail("audio/a b.wav", "slow", "slow", "slow")
    with pytest.raises(AudioclfError, match=r"timeout_s=0\.3.*gave up after 3"):
        fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "out" / "y.wav")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("fault, message", [("html", "looks like HTML"), ("empty", "empty")])
def test_not_audio_is_a_clear_error_and_not_kept(
    mirror: MirrorServer, clip: Path, fetcher: Fetcher, tmp_path: Path, fault: str, message: str
) -> None:
    mirror.fail("audio/a b.wav", fault)
    with pytest.raises(AudioclfError, match=message):
        fetcher.fetch_file(join(mirror.url, "audio/a b.wav"), tmp_path / "out" / "x.wav")
    assert mirror.hits["audio/a b.wav"] == 1  # wrong content is not transient: no retry
    assert leftovers(tmp_path / "out") == []


def test_local_missing_and_not_audio(tmp_path: Path, fetcher: Fetcher) -> None:
    with pytest.raises(AudioclfError, match="not found"):
        fetcher.fetch_file(str(tmp_path / "nope.wav"), tmp_path / "out" / "x.wav")
    (tmp_path / "page.wav").write_text("<html>nope</html>")
    with pytest.raises(AudioclfError, match="HTML"):
        fetcher.fetch_file(str(tmp_path / "page.wav"), tmp_path / "out" / "x.wav")
    assert leftovers(tmp_path / "out") == []


def test_read_bytes_refuses_html(mirror: MirrorServer, mirror_root: Path, fetcher: Fetcher) -> None:
    (mirror_root / "meta.csv").write_text("<!DOCTYPE html><p>login</p>")
    with pytest.raises(AudioclfError, match="HTML instead"):
        fetcher.read_bytes(join(mirror.url, "meta.csv"))


@pytest.fixture
def big(mirror_root: Path) -> bytes:
    data = bytes(range(256)) * 4000  # ~1 MB
    (mirror_root / "corpus.tar.gz").write_bytes(data)
    return data


def test_resumable_download_continues_with_range(mirror: MirrorServer, big: bytes, tmp_path: Path) -> None:
    url = join(mirror.url, "corpus.tar.gz")
    dest = tmp_path / "cache" / "corpus.tar.gz"
    once = Fetcher(timeout_s=1.0, retries=0, progress=False)
    mirror.fail("corpus.tar.gz", "drop")
    with pytest.raises(AudioclfError, match="closed"):
        once.fetch_resumable(url, dest)  # the interrupted run
    part = dest.with_name("corpus.tar.gz.part")
    have = part.stat().st_size
    assert not dest.exists() and 0 < have <= len(big) // 2

    once.fetch_resumable(url, dest)  # the rerun asks only for the rest
    assert mirror.range_headers == [("corpus.tar.gz", f"bytes={have}-")]
    assert dest.read_bytes() == big and not part.exists()
    once.fetch_resumable(url, dest)  # complete: no request at all
    assert mirror.hits["corpus.tar.gz"] == 2


def test_resume_within_one_run_does_not_use_up_retries(mirror: MirrorServer, big: bytes, tmp_path: Path) -> None:
    mirror.fail("corpus.tar.gz", "drop", "drop", "drop")  # each attempt gets further
    f = Fetcher(timeout_s=1.0, retries=1, progress=False)
    dest = f.fetch_resumable(join(mirror.url, "corpus.tar.gz"), tmp_path / "corpus.tar.gz")
    assert dest.read_bytes() == big
    assert len(mirror.range_headers) == 3


def test_server_ignoring_range_restarts_cleanly(mirror: MirrorServer, big: bytes, tmp_path: Path) -> None:
    mirror.honour_range = False
    part = tmp_path / "corpus.tar.gz.part"
    part.write_bytes(b"stale bytes from some other file")
    f = Fetcher(timeout_s=1.0, retries=0, progress=False)
    assert f.fetch_resumable(join(mirror.url, "corpus.tar.gz"), tmp_path / "corpus.tar.gz").read_bytes() == big


def test_damaged_download_is_discarded(mirror: MirrorServer, big: bytes, tmp_path: Path) -> None:
    def reject(path: Path) -> None:
        raise AudioclfError(f"{path}: not a readable tar archive")

    f = Fetcher(timeout_s=1.0, retries=0, progress=False)
    with pytest.raises(AudioclfError, match="damaged"):
        f.fetch_resumable(join(mirror.url, "corpus.tar.gz"), tmp_path / "cache" / "corpus.tar.gz", validate=reject)
    assert leftovers(tmp_path / "cache") == []

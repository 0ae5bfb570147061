"""archive.py: only regular files inside the folder are read; selected members only are written."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from audioclf.archive import cached_scan, extract_members, scan_tar
from audioclf.errors import AudioclfError
from audioclf.fetch import check_audio
from tests.sources.corpus_mirror import make_tar, tone


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("./yes/a_nohash_0.wav")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    "name, kind, match",
    [
        ("../evil.wav", tarfile.REGTYPE, "outside"),
        ("yes/../../evil.wav", tarfile.REGTYPE, "outside"),
        ("/etc/evil.wav", tarfile.REGTYPE, "outside"),
        ("yes/link.wav", tarfile.SYMTYPE, "link"),
        ("yes/hard.wav", tarfile.LNKTYPE, "link"),
        ("yes/fifo", tarfile.FIFOTYPE, "device or pipe"),
    ],
)
def test_unsafe_members_refuse_the_archive(tmp_path: Path, name: str, kind: bytes, match: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    data = b"xyz" if kind == tarfile.REGTYPE else b""
    member.size = len(data)
    archive = _tar_with(tmp_path / "bad.tar.gz", member, data)
    with pytest.raises(AudioclfError, match=match):
        scan_tar(archive)
    out = tmp_path / "raw"
    with pytest.raises(AudioclfError, match=match):
        extract_members(archive, {"never": out / "x.wav"}, check_audio, lambda *_: None)
    assert not (tmp_path / "evil.wav").exists() and not out.exists()


def test_truncated_archive_is_a_clear_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for i in range(5):
        tone(tree / f"w/{i}.wav", 16_000, seed=i, seconds=1.0)
    archive = make_tar(tree, tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(AudioclfError, match=r"not a readable tar archive.*delete it"):
        scan_tar(archive)


def test_extract_only_selected_and_index_cache(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for i in range(4):
        tone(tree / f"w/{i}.wav", 16_000, seed=i)
    (tree / "list.txt").write_text("w/1.wav\n")
    archive = make_tar(tree, tmp_path / "a.tar.gz", prefix="./")
    index = cached_scan(archive, tmp_path / "index.json", capture=("list.txt",))
    assert index.members == ["list.txt", "w/0.wav", "w/1.wav", "w/2.wav", "w/3.wav"]
    assert index.texts == {"list.txt": "w/1.wav\n"}
    assert cached_scan(archive, tmp_path / "index.json", capture=("list.txt",)) == index  # from the cache

    done = []
    raw = tmp_path / "raw"
    extract_members(
        archive,
        {"w/1.wav": raw / "a/1.wav", "w/3.wav": raw / "a/3.wav"},
        check_audio,
        lambda name, dest: done.append(name),
    )
    assert sorted(p.name for p in (raw / "a").iterdir()) == ["1.wav", "3.wav"]
    assert done == ["w/1.wav", "w/3.wav"]
    with pytest.raises(AudioclfError, match="not in the archive"):
        extract_members(archive, {"w/9.wav": raw / "a/9.wav"}, check_audio, lambda *_: None)


def test_member_that_is_not_audio_is_not_kept(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "w").mkdir(parents=True)
    (tree / "w/0.wav").write_text("<html>not audio</html>")
    archive = make_tar(tree, tmp_path / "a.tar.gz")
    with pytest.raises(AudioclfError, match="damaged"):
        extract_members(archive, {"w/0.wav": tmp_path / "raw/0.wav"}, check_audio, lambda *_: None)
    assert list((tmp_path / "raw").iterdir()) == []

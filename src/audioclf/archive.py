"""Reading corpus tar archives without trusting them.

A scan lists the regular files (and captures the few small text members the metadata needs), an
extraction streams through the archive once and writes only the selected members, each to a temp
file that is validated and then renamed. Member names are never used as output paths: callers map
them to paths they checked. Absolute names, `..`, links and device files stop the run.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audioclf.errors import AudioclfError, brief
from audioclf.fetch import InvalidContent
from audioclf.fileio import atomic_path, write_json
from audioclf.limits import Limits, describe_cap

INDEX_VERSION = 2  # 2: captured texts are capped and NUL-free
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


class UnsafeArchive(AudioclfError):
    """The archive holds something no corpus archive holds (a path leaving the folder, a link, a
    device, an oversized or binary metadata member): refused whole. `reason` omits the location."""

    refused = True

    def __init__(self, archive: Path | str, reason: str) -> None:
        super().__init__(f"{archive}: {reason}; refusing this archive (use the corpus's official archive)")
        self.reason = reason


class DamagedArchive(AudioclfError):
    """Not a readable tar archive (cut short, corrupted): downloading it again may help."""


@dataclass(frozen=True)
class ArchiveIndex:
    members: list[str]  # regular files, normalised names, archive order
    texts: dict[str, str]  # captured text members by normalised name


def normalise_member(name: str, archive: Path) -> str:
    """'./a/b.wav' → 'a/b.wav'; refuse names that would leave the extraction folder."""
    posix = name.replace("\\", "/")
    norm = posixpath.normpath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or norm == ".." or norm.startswith("../"):
        raise UnsafeArchive(archive, f"member {brief(repr(name))} points outside the extraction folder")
    return "" if norm == "." else norm


def _check_member(member: tarfile.TarInfo, archive: Path) -> str:
    name = normalise_member(member.name, archive)
    if member.issym() or member.islnk():
        raise UnsafeArchive(
            archive,
            f"member {brief(repr(member.name))} is a link (to {brief(repr(member.linkname))}); corpus archives "
            "hold only regular files",
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchive(archive, f"member {brief(repr(member.name))} is a device or pipe")
    return name


def _read_text(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, archive: Path, cap: int) -> str:
    """A metadata member's text, read only up to `cap` bytes: an oversized or binary one refuses
    the archive before it is held in memory or written to the index."""
    if member.size > cap:
        raise UnsafeArchive(
            archive, f"metadata member {brief(repr(name))} is {describe_cap(cap, 'data.max_metadata_mb')}"
        )
    fh = tar.extractfile(member)
    data = fh.read(cap + 1) if fh else b""
    if len(data) > cap:  # pragma: no cover - tar sizes are exact; kept for other readers
        raise UnsafeArchive(
            archive, f"metadata member {brief(repr(name))} is {describe_cap(cap, 'data.max_metadata_mb')}"
        )
    if b"\x00" in data:
        raise UnsafeArchive(archive, f"metadata member {brief(repr(name))} holds NUL bytes (binary, not text)")
    return data.decode("utf-8-sig", errors="replace")


def matches(name: str, suffixes: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("/" + s) for s in suffixes)


def scan_tar(path: Path, capture: tuple[str, ...] = (), limits: Limits | None = None) -> ArchiveIndex:
    """Read the whole archive once: every regular file's name, plus the text of members whose
    name ends with one of `capture` (each at most limits.max_metadata_bytes). Raises
    UnsafeArchive / DamagedArchive (AudioclfErrors)."""
    cap = (limits or Limits()).max_metadata_bytes
    members: list[str] = []
    texts: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = _check_member(member, path)
                if not member.isfile():
                    continue
                members.append(name)
                if matches(name, capture):
                    texts[name] = _read_text(tar, member, name, path, cap)
    except _READ_ERRORS as exc:
        raise DamagedArchive(
            f"{path}: not a readable tar archive ({brief(exc, 120)}); delete it to download again"
        ) from None
    if not members:
        raise DamagedArchive(f"{path}: the archive holds no files; delete it to download again")
    return ArchiveIndex(members=members, texts=texts)


def cached_scan(
    path: Path, index_path: Path, capture: tuple[str, ...] = (), limits: Limits | None = None
) -> ArchiveIndex:
    """`scan_tar`, remembered in `index_path` while the archive's size and mtime are unchanged
    (a multi-GB archive takes a minute to scan; a rerun with a wider selection should not). A
    refused archive leaves no index."""
    limits = limits or Limits()
    stat = path.stat()
    key = {
        "version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "capture": list(capture),
        "max_metadata_bytes": limits.max_metadata_bytes,
    }  # fmt: skip
    if index_path.is_file():
        try:
            saved = json.loads(index_path.read_text())
            if saved.get("key") == key:
                return ArchiveIndex(members=saved["members"], texts=saved["texts"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged index only costs a rescan
    try:
        index = scan_tar(path, capture, limits)
    except AudioclfError:
        index_path.unlink(missing_ok=True)  # an older index of a now-refused archive goes too
        raise
    write_json(index_path, {"key": key, "members": index.members, "texts": index.texts})
    return index


def extract_members(
    path: Path,
    wanted: dict[str, Path],
    validate: Callable[[Path], None],
    done: Callable[[str, Path], None],
    reject: Callable[[str, str], None] | None = None,
    limits: Limits | None = None,
) -> None:
    """Stream through the archive once and write member `name` to `wanted[name]` (temp file,
    `validate`, rename), calling `done(name, dest)` after each. Stops early when all are out.
    A member that fails `validate` (not usable audio) or is larger than limits.max_file_bytes is
    not kept (an oversized one is not even written): with `reject`, it is reported as
    `reject(name, reason)` and the extraction goes on; without, it stops the run."""
    cap = (limits or Limits()).max_file_bytes
    remaining = dict(wanted)
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not remaining:
                    break
                name = _check_member(member, path)
                dest = remaining.pop(name, None)
                if dest is None or not member.isfile():
                    continue
                if member.size > cap:
                    reason = describe_cap(cap, "data.max_file_mb")
                    if reject is None:
                        raise AudioclfError(f"{path}: member {brief(repr(name))} is {reason}; raise data.max_file_mb")
                    reject(name, reason)
                    continue
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise AudioclfError(f"{path}: member {name!r} has no data; delete the archive to download again")
                try:
                    with atomic_path(dest) as tmp:
                        with source, open(tmp, "wb") as fh:
                            shutil.copyfileobj(source, fh, 1 << 20)
                        validate(tmp)  # on failure the temp file is removed and dest never created
                except InvalidContent as exc:
                    if reject is None:
                        raise AudioclfError(
                            f"{path}: member {name!r}: {exc}; the archive is damaged, delete it to download again"
                        ) from None
                    reject(name, str(exc))
                    continue
                done(name, dest)
    except _READ_ERRORS as exc:
        raise DamagedArchive(
            f"{path}: reading the archive failed ({brief(exc, 120)}); delete it to download again"
        ) from None
    if remaining:
        first = next(iter(remaining))
        raise AudioclfError(
            f"{path}: {len(remaining)} selected member(s) are not in the archive, e.g. {first!r}; "
            "the archive does not match its metadata (a partial mirror?)"
        )

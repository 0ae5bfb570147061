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

INDEX_VERSION = 1
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


@dataclass(frozen=True)
class ArchiveIndex:
    members: list[str]  # regular files, normalised names, archive order
    texts: dict[str, str]  # captured text members by normalised name


def normalise_member(name: str, archive: Path) -> str:
    """'./a/b.wav' → 'a/b.wav'; refuse names that would leave the extraction folder."""
    posix = name.replace("\\", "/")
    norm = posixpath.normpath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or norm == ".." or norm.startswith("../"):
        raise AudioclfError(
            f"{archive}: member {name!r} points outside the extraction folder; refusing this archive "
            "(delete it and download the corpus from its official source)"
        )
    return "" if norm == "." else norm


def _check_member(member: tarfile.TarInfo, archive: Path) -> str:
    name = normalise_member(member.name, archive)
    if member.issym() or member.islnk():
        raise AudioclfError(
            f"{archive}: member {member.name!r} is a link (to {member.linkname!r}); corpus archives hold only "
            "regular files, refusing this archive"
        )
    if not (member.isfile() or member.isdir()):
        raise AudioclfError(f"{archive}: member {member.name!r} is a device or pipe; refusing this archive")
    return name


def matches(name: str, suffixes: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("/" + s) for s in suffixes)


def scan_tar(path: Path, capture: tuple[str, ...] = ()) -> ArchiveIndex:
    """Read the whole archive once: every regular file's name, plus the text of members whose
    name ends with one of `capture`. Raises AudioclfError on a damaged or unsafe archive."""
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
                    fh = tar.extractfile(member)
                    texts[name] = fh.read().decode("utf-8-sig", errors="replace") if fh else ""
    except _READ_ERRORS as exc:
        raise AudioclfError(f"{path}: not a readable tar archive ({brief(exc)}); delete it to download again") from None
    if not members:
        raise AudioclfError(f"{path}: the archive holds no files; delete it to download again")
    return ArchiveIndex(members=members, texts=texts)


def cached_scan(path: Path, index_path: Path, capture: tuple[str, ...] = ()) -> ArchiveIndex:
    """`scan_tar`, remembered in `index_path` while the archive's size and mtime are unchanged
    (a multi-GB archive takes a minute to scan; a rerun with a wider selection should not)."""
    stat = path.stat()
    key = {"version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "capture": list(capture)}
    if index_path.is_file():
        try:
            saved = json.loads(index_path.read_text())
            if saved.get("key") == key:
                return ArchiveIndex(members=saved["members"], texts=saved["texts"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged index only costs a rescan
    index = scan_tar(path, capture)
    write_json(index_path, {"key": key, "members": index.members, "texts": index.texts})
    return index


def extract_members(
    path: Path,
    wanted: dict[str, Path],
    validate: Callable[[Path], None],
    done: Callable[[str, Path], None],
    reject: Callable[[str, str], None] | None = None,
) -> None:
    """Stream through the archive once and write member `name` to `wanted[name]` (temp file,
    `validate`, rename), calling `done(name, dest)` after each. Stops early when all are out.
    A member that fails `validate` (not usable audio) is not kept: with `reject`, it is reported
    as `reject(name, reason)` and the extraction goes on; without, it stops the run."""
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
        raise AudioclfError(f"{path}: reading the archive failed ({brief(exc)}); delete it to download again") from None
    if remaining:
        first = next(iter(remaining))
        raise AudioclfError(
            f"{path}: {len(remaining)} selected member(s) are not in the archive, e.g. {first!r}; "
            "the archive does not match its metadata (a partial mirror?)"
        )

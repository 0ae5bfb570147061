"""Getting bytes from http(s), `file://` or a local path into data/raw, safely.

One `requests.Session` per source (connection reuse across threads), a timeout on every request,
retries with exponential backoff on 5xx / 429 / dropped connections / timeouts, and no retry on
4xx (a missing file stays missing). Files stream to a temp name in the destination folder, are
validated (non-empty, decodable audio) and only then renamed, so a partial or wrong file never
survives. Archives resume with HTTP Range from a `.part` file kept between runs.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import requests
import soundfile as sf
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from audioclf.audio import MAX_RATE, MIN_RATE, describe_content, libsndfile_reason
from audioclf.errors import AudioclfError, brief
from audioclf.fileio import atomic_path

SCHEMES = ("http", "https", "file")
CHUNK = 1 << 16
BACKOFF_S = 0.5  # first retry waits this long, then doubles (read at call time: tests lower it)
MAX_BACKOFF_S = 30.0
USER_AGENT = "audioclf-download/0.1 (python-requests)"

T = TypeVar("T")


class InvalidContent(Exception):
    """The bytes arrived but are not what was expected (HTML instead of audio, empty, truncated)."""


class UnusableAudio(AudioclfError):
    """One file arrived intact but is not usable audio (empty, a header only, text saved as .wav).

    A problem of that file, not of the server or of data.source: the download stage records it in
    `rejected.csv` and goes on (the features stage then skips and reports it), where any other
    AudioclfError stops the run. `reason` is the message without the location."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{uri}: {reason}; remove or replace it at the source, or leave it to be skipped")
        self.uri = uri
        self.reason = reason


class _Transient(Exception):
    """A failure worth retrying: 5xx, 429, connection error, timeout, body cut short."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------------
# Locations: a URL (http, https, file) or a plain local path


def scheme_of(uri: str) -> str:
    """'' for a plain local path (including Windows drive paths like C:\\data), else the scheme."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    return "" if len(scheme) <= 1 else scheme


def check_location(uri: str, param: str = "data.source") -> None:
    """Refuse schemes other than http, https and file (and empty locations)."""
    if not isinstance(uri, str) or not uri.strip():
        raise AudioclfError(f"params: `{param}` is empty; give a URL (http, https, file://) or a local path")
    scheme = scheme_of(uri)
    if scheme and scheme not in SCHEMES:
        raise AudioclfError(
            f"params: `{param}` {uri!r} uses the scheme {scheme!r}; only http, https, file:// and local paths work"
        )


def is_remote(uri: str) -> bool:
    return scheme_of(uri) in ("http", "https")


def local_path(uri: str) -> Path:
    """`file://` URL or plain path → Path (a file URL with a host other than localhost is refused)."""
    if scheme_of(uri) == "file":
        parts = urllib.parse.urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise AudioclfError(f"{uri}: a file:// URL names a local path (file:///abs/path), not {parts.netloc!r}")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(uri).expanduser()


def join(base: str, rel: str) -> str:
    """`base` is a folder (URL or path); `rel` a slash-separated path inside it."""
    if is_remote(base):
        return base.rstrip("/") + "/" + urllib.parse.quote(rel.lstrip("/"), safe="/")
    if scheme_of(base) == "file":
        return str(local_path(base) / rel)
    return str(Path(base).expanduser() / rel)


def parent(uri: str) -> str:
    """The folder holding `uri` (for paths relative to a CSV)."""
    if is_remote(uri):
        parts = urllib.parse.urlsplit(uri)
        folder = parts.path.rsplit("/", 1)[0] + "/"
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, folder, "", ""))
    return str(local_path(uri).parent)


def basename(uri: str) -> str:
    if is_remote(uri):
        return urllib.parse.unquote(urllib.parse.urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1])
    return local_path(uri).name


# ---------------------------------------------------------------------------------------------
# Content checks


def check_audio(path: Path) -> None:
    """Raise InvalidContent unless `path` is non-empty audio that libsndfile decodes to the end."""
    if path.stat().st_size == 0:
        raise InvalidContent("the body is empty (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as audio:
            rate = audio.samplerate
            frames = sum(len(block) for block in audio.blocks(blocksize=CHUNK, dtype="float32"))
    except (RuntimeError, ValueError, TypeError, sf.SoundFileError) as exc:
        raise InvalidContent(
            f"not decodable audio ({describe_content(path)}; libsndfile: {libsndfile_reason(exc, path)})"
        ) from None
    if frames == 0:
        raise InvalidContent("the audio has no samples (a header only)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidContent(f"the header's sample rate {rate} Hz is implausible (a damaged header)")


# ---------------------------------------------------------------------------------------------
# The fetcher


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' → (100, 1000); 'bytes */1000' → (None, 1000)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = span.split("-")[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


class Fetcher:
    """Shared HTTP session + local copies with the same contract: temp file, validate, rename."""

    def __init__(self, timeout_s: float = 30.0, retries: int = 4, pool_size: int = 32, progress: bool = True) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.progress = progress
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # retries are ours (they must also cover a body cut short, which urllib3's Retry cannot see)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    # -- public API ------------------------------------------------------------------------

    def read_bytes(self, uri: str, what: str = "metadata") -> bytes:
        """Small files (metadata CSVs, lists): whole body in memory, same retries and checks."""
        check_location(uri)
        if not is_remote(uri):
            path = local_path(uri)
            if not path.is_file():
                raise AudioclfError(f"{path}: {what} not found; check data.source (a mirror keeps the corpus layout)")
            data = path.read_bytes()
        else:
            data = self._retrying(uri, lambda: self._get_body(uri))
        if not data.strip():
            raise AudioclfError(f"{uri}: the {what} file is empty; check data.source")
        if data.lstrip()[:1] == b"<":
            raise AudioclfError(f"{uri}: got HTML instead of the {what} file; check data.source (a raw-file URL)")
        return data

    def fetch_file(self, uri: str, dest: Path, validate: Callable[[Path], None] | None = check_audio) -> int:
        """Fetch `uri` to `dest` atomically; returns its size. Nothing is left at `dest` on failure."""
        check_location(uri)
        with atomic_path(dest) as tmp:
            content_type = ""
            if is_remote(uri):
                content_type = self._retrying(uri, lambda: self._download(uri, tmp))
            else:
                self._copy_local(uri, tmp)
            if validate is not None:
                try:
                    validate(tmp)
                except InvalidContent as exc:
                    if _is_page(content_type):
                        # a server page (login wall, wrong URL, error page), not a bad file of the corpus
                        raise AudioclfError(
                            f"{uri}: the server sent a web page ({content_type.split(';')[0]}) instead of audio: "
                            f"{exc}; check that data.source points at the corpus files"
                        ) from None
                    raise UnusableAudio(uri, str(exc)) from None
            size = tmp.stat().st_size
        return size

    def fetch_resumable(self, url: str, dest: Path, validate: Callable[[Path], None] | None = None) -> Path:
        """Download a large file to `dest` via `dest.part`, resuming with HTTP Range after an
        interruption (the .part survives between runs); rename once complete and validated."""
        check_location(url)
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not self.progress, leave=False)
        try:
            self._retrying(url, lambda: self._download_range(url, part, bar), progress=lambda: _size(part))
        finally:
            bar.close()
        if validate is not None:
            try:
                validate(part)
            except (AudioclfError, InvalidContent) as exc:
                part.unlink(missing_ok=True)  # a damaged download must not be resumed
                raise AudioclfError(f"{url}: the download is damaged ({exc}); rerun to download it again") from None
        os.replace(part, dest)
        return dest

    # -- internals ---------------------------------------------------------------------------

    def _retrying(self, url: str, op: Callable[[], T], progress: Callable[[], int] | None = None) -> T:
        """Run `op`, retrying transient failures with exponential backoff. With `progress`, an
        attempt that moved the download forward does not count against the retries."""
        failures = 0
        mark = progress() if progress else 0
        while True:
            try:
                return op()
            except _Transient as exc:
                now = progress() if progress else 0
                if now > mark:
                    mark, failures = now, 0
                failures += 1
                if failures > self.retries:
                    raise AudioclfError(
                        f"{url}: {exc} (gave up after {failures} attempt(s)); check the server or mirror, or "
                        "raise data.retries / data.timeout_s; finished files are kept, rerun to resume"
                    ) from None
                delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (failures - 1))
                if exc.retry_after is not None:
                    delay = min(MAX_BACKOFF_S, max(delay, exc.retry_after))
                time.sleep(delay)

    def _get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        try:
            resp = self.session.get(url, stream=True, timeout=self.timeout_s, headers=headers)
        except requests.Timeout:
            raise _Transient(f"no response within data.timeout_s={self.timeout_s} s") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed ({brief(exc)})") from None
        except requests.RequestException as exc:  # invalid URL, too many redirects: not transient
            raise AudioclfError(f"{url}: {brief(exc)}; check data.source") from None
        code = resp.status_code
        if code == 429 or code >= 500:
            retry_after = resp.headers.get("Retry-After", "")
            resp.close()
            raise _Transient(f"HTTP {code} {resp.reason}", float(retry_after) if retry_after.isdigit() else None)
        if code >= 400 and code != 416:
            resp.close()
            raise AudioclfError(
                f"{url}: HTTP {code} {resp.reason}; check data.source (the file is missing from the server or mirror)"
            )
        return resp

    def _copy_body(self, resp: requests.Response, fh: BinaryIO, on_bytes: Callable[[int], object] | None) -> int:
        n = 0
        try:
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
                n += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            if "timed out" in str(exc).lower():
                raise _Transient(f"body stalled longer than data.timeout_s={self.timeout_s} s") from None
            raise _Transient(f"connection closed mid-body after {n} bytes ({brief(exc)})") from None
        return n

    def _download(self, url: str, tmp: Path) -> str:
        """Stream `url` into `tmp`; returns the Content-Type."""
        with self._get(url, {"Accept-Encoding": "identity"}) as resp, open(tmp, "wb") as fh:
            n = self._copy_body(resp, fh, None)
            expected = resp.headers.get("Content-Length")
            content_type = resp.headers.get("Content-Type", "")
        if expected is not None and expected.isdigit() and n != int(expected):
            raise _Transient(f"connection closed after {n} of {expected} bytes")
        return content_type

    def _get_body(self, url: str) -> bytes:
        with self._get(url) as resp:
            try:
                return resp.content
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                raise _Transient(f"connection closed mid-body ({brief(exc)})") from None

    def _download_range(self, url: str, part: Path, bar: tqdm) -> None:
        have = _size(part)
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        with self._get(url, headers) as resp:
            if resp.status_code == 416:  # nothing after `have`: complete already, or a stale .part
                _, total = _content_range(resp.headers.get("Content-Range"))
                if total == have:
                    return
                part.unlink(missing_ok=True)
                raise _Transient("the partial download did not match the server's file; starting over")
            if resp.status_code == 206:
                start, total = _content_range(resp.headers.get("Content-Range"))
                if start != have:
                    part.unlink(missing_ok=True)
                    raise _Transient(f"the server resumed at byte {start}, not {have}; starting over")
                mode = "ab"
            else:  # 200: the server ignores Range, so the body is the whole file
                have, mode = 0, "wb"
                length = resp.headers.get("Content-Length", "")
                total = int(length) if length.isdigit() else None
            bar.reset(total=total)
            bar.update(have)
            with open(part, mode) as fh:
                n = self._copy_body(resp, fh, bar.update)
        if total is not None and have + n != total:
            raise _Transient(f"connection closed at byte {have + n} of {total}")

    def _copy_local(self, uri: str, tmp: Path) -> None:
        path = local_path(uri)
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; check data.source (a mirror keeps the corpus layout)")
        shutil.copyfile(path, tmp)


def _is_page(content_type: str) -> bool:
    """A Content-Type that a web page (not a stored file) comes with."""
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

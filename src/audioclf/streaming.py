"""Bounded-memory audio input: chunked file decoding, an exact streaming resampler, a sliding
windower and a raw-PCM frame decoder. numpy + soundfile + scipy only (no torch).

Everything here works on chunks, so an hour-long file or an endless stream holds at most a few
seconds of audio. The resampler is *exact*: its output equals `audio.resample` (scipy's
`resample_poly`) on the whole signal, bit for bit, and the windower places windows exactly as
`window_starts` does on a whole clip, so the file path, stdin and live streams score the same
windows.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audioclf.audio import MAX_RATE, MIN_RATE, _ratio, clean, describe_content, downmix
from audioclf.errors import AudioclfError, brief

BLOCK_FRAMES = 1 << 16  # frames decoded per read: ~4 s at 16 kHz, a few MB whatever the file length
# resample_poly's filter: half-length 10 * max(up, down) taps at the upsampled rate
_HALF_LEN_PER_RATE = 10
PCM_FORMATS = {"s16le": ("<i2", 1 / 32768), "f32le": ("<f4", 1.0)}


def window_starts(n_total: int, n_window: int, hop: int) -> list[int]:
    """Window start samples covering the whole clip: every `hop` samples, plus one window ending
    at the clip's end when the hops do not land there (every window is then full audio, as in
    training). A clip no longer than a window is one window."""
    if n_total <= n_window:
        return [0]
    starts = list(range(0, n_total - n_window + 1, hop))
    if starts[-1] + n_window < n_total:
        starts.append(n_total - n_window)
    return starts


class StreamResampler:
    """`resample_poly(x, up, down)` computed chunk by chunk with the same result as on the whole
    of `x`. Output sample m depends on input samples within `reach` of m·down/up; a chunk is
    resampled from an input offset that is a multiple of `down` (so its outputs line up with the
    whole signal's) with `reach` samples of margin, and only outputs whose inputs are all known
    are emitted. Memory: the current chunk plus 2·reach samples."""

    def __init__(self, orig_rate: int, target_rate: int) -> None:
        ratio = _ratio(orig_rate, target_rate)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = self.up == self.down
        self.reach = math.ceil(_HALF_LEN_PER_RATE * max(self.up, self.down) / self.up) + 2
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # global input index of _buf[0], a multiple of `down`
        self._n_in = 0  # input samples seen
        self._next_out = 0  # global index of the next output sample

    def _emit(self, m_end: int) -> np.ndarray:
        if m_end <= self._next_out:
            return np.zeros(0, dtype=np.float32)
        out = resample_poly(self._buf, self.up, self.down).astype(np.float32)
        first = self._buf_start * self.up // self.down  # exact: _buf_start % down == 0
        piece = out[self._next_out - first : m_end - first]
        self._next_out = m_end
        # keep only what later outputs still reach, from a multiple of `down`
        keep_from = max(self._buf_start, (self._next_out * self.down // self.up - self.reach) // self.down * self.down)
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        return piece

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 input → the output samples it completes (possibly none)."""
        self._n_in += len(samples)
        if self.identity:
            return samples
        self._buf = np.concatenate([self._buf, samples])
        safe_in = self._n_in - self.reach  # inputs past this may still change an output
        return self._emit(max(0, (safe_in * self.up) // self.down))

    def finish(self) -> np.ndarray:
        """The remaining output: the signal ends here (zeros beyond, as resample_poly assumes)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self.up // self.down)  # ceil, resample_poly's output length
        return self._emit(total) if len(self._buf) else np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class Window:
    start: int  # first sample, at the model's rate
    n_real: int  # samples of real audio (< the window length only for a padded lone window)
    samples: np.ndarray  # float32 (n_window,)


class Windower:
    """Cuts a mono sample stream into windows of `n_window` every `hop` samples, as
    `window_starts` does on a whole clip: each window is emitted as soon as its last sample
    arrives; at the end, one window aligned to the end when the hops missed it, or a single
    zero-padded window for a stream shorter than one window. Holds at most n_window + hop samples."""

    def __init__(self, n_window: int, hop: int) -> None:
        self.n, self.hop = n_window, hop
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self._next = 0  # start of the next window
        self._last_end = 0  # end of the last window emitted
        self.n_total = 0

    def push(self, samples: np.ndarray) -> list[Window]:
        self._buf = np.concatenate([self._buf, samples])
        self.n_total += len(samples)
        out = []
        while self._next + self.n <= self.n_total:
            i = self._next - self._buf_start
            out.append(Window(self._next, self.n, self._buf[i : i + self.n].copy()))
            self._last_end = self._next + self.n
            self._next += self.hop
        # the end-aligned last window needs the last n samples; the next hop needs from _next on
        keep_from = max(self._buf_start, min(self._next, self.n_total - self.n))
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        return out

    def finish(self) -> list[Window]:
        if self.n_total == 0:
            return []
        if self.n_total < self.n:  # shorter than a window: zero-padded, as in training
            return [Window(0, self.n_total, np.pad(self._buf, (0, self.n - self.n_total)))]
        if self._last_end < self.n_total:
            start = self.n_total - self.n
            i = start - self._buf_start
            return [Window(start, self.n, self._buf[i : i + self.n].copy())]
        return []


def mono_at_rate(blocks: Iterable[np.ndarray], orig_rate: int, target_rate: int) -> Iterator[np.ndarray]:
    """(frames, channels) or (frames,) float32 blocks → cleaned mono blocks at `target_rate`."""
    resampler = StreamResampler(orig_rate, target_rate)
    for block in blocks:
        piece = resampler.push(np.ascontiguousarray(downmix(clean(block))[0], dtype=np.float32))
        if len(piece):
            yield piece
    tail = resampler.finish()
    if len(tail):
        yield tail


def _decode_error(name: str, exc: BaseException, head: Path | None) -> AudioclfError:
    what = describe_content(head) + "; " if head is not None else ""
    reason = brief(str(exc).replace(f"'{name}'", "the file"), 160)
    return AudioclfError(f"{name}: cannot decode audio ({what}libsndfile: {reason}); remove or replace the file")


def open_audio(source: str | Path | BinaryIO, name: str) -> sf.SoundFile:
    """A SoundFile over a path or a seekable binary buffer, with the checks `read_audio` makes
    (empty, implausible rate, undecodable) as one-line errors naming `name`."""
    path = Path(source) if isinstance(source, str | Path) else None
    if path is not None:
        if not path.is_file():
            raise AudioclfError(f"{name}: not a regular file; pass an audio file")
        if path.stat().st_size == 0:
            raise AudioclfError(f"{name}: cannot decode audio: the file is empty (0 bytes); remove or replace the file")
    try:
        audio = sf.SoundFile(str(path) if path is not None else source)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise _decode_error(name, exc, path) from None
    if not MIN_RATE <= audio.samplerate <= MAX_RATE:
        audio.close()
        raise AudioclfError(
            f"{name}: cannot decode audio: the header's sample rate {audio.samplerate} Hz is implausible "
            f"(outside {MIN_RATE}..{MAX_RATE}); the file is damaged, remove or replace it"
        )
    return audio


def file_blocks(audio: sf.SoundFile, name: str, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """float32 (frames, channels) blocks of an open file; a header with no samples is an error."""
    n_read = 0
    while True:
        try:
            block = audio.read(block_frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise _decode_error(name, exc, None) from None
        if block.shape[0] == 0:
            break
        n_read += block.shape[0]
        yield block
    if n_read == 0 or audio.channels == 0:
        raise AudioclfError(f"{name}: cannot decode audio: a header with no samples; remove or replace the file")


def read_bounded(stream: BinaryIO, max_bytes: int, name: str) -> io.BytesIO:
    """All of `stream` in memory (a WAV header may need seeking to its end), at most `max_bytes`."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AudioclfError(
            f"{name}: more than {max_bytes // 2**20} MiB on stdin (the buffer limit for a seekable WAV/FLAC); "
            "save it to a file, raise --stdin-max-mb, or send raw PCM with --stream"
        )
    if not data:
        raise AudioclfError(f"{name}: nothing on stdin; pipe a WAV/FLAC file into `audioclf predict -`")
    return io.BytesIO(data)


class PcmDecoder:
    """Raw interleaved PCM bytes → float32 (frames, channels), carrying a partial frame over to
    the next chunk (reads from a pipe end anywhere)."""

    def __init__(self, fmt: str, channels: int) -> None:
        if fmt not in PCM_FORMATS:
            raise AudioclfError(f"--format must be one of {', '.join(PCM_FORMATS)}, got {brief(fmt, 40)}")
        self.dtype, self.scale = PCM_FORMATS[fmt]
        self.channels = channels
        self.frame_bytes = np.dtype(self.dtype).itemsize * channels
        self._rest = b""

    def push(self, data: bytes) -> np.ndarray:
        data = self._rest + data
        n = len(data) // self.frame_bytes * self.frame_bytes
        self._rest = data[n:]
        samples = np.frombuffer(data[:n], dtype=self.dtype).astype(np.float32)
        if self.scale != 1.0:
            samples *= self.scale
        return samples.reshape(-1, self.channels)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (dropped if the stream ends here)."""
        return len(self._rest)


def pcm_blocks(stream: BinaryIO, decoder: PcmDecoder, read_bytes: int = 8192) -> Iterator[np.ndarray]:
    """Frames from a raw PCM pipe as they arrive (read1: whatever is there, without waiting for
    a full buffer), until EOF."""
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(read_bytes)
        if not data:
            return
        block = decoder.push(data)
        if len(block):
            yield block

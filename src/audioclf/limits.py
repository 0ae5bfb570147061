"""Bounds on what a source may make us hold: size caps per file and a minimum transfer speed.

A hostile or broken server can send a 200 MB "clip", a metadata file padded with 50 MB of NUL
bytes, a gzip body that inflates 1000-fold, or one byte a second forever. The caps come from
`data.max_file_mb` / `data.max_metadata_mb` (the corpus preset when `auto`); the stall rule asks
for a minimum average speed over a window, so a slow but moving 6 GB archive is fine while a
trickle is cut, and a per-read timeout (`data.timeout_s`) still catches a silent connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MB = 1 << 20
# Read at call time (tests lower them). 1 KiB/s over 30 s: far below any working link.
STALL_WINDOW_S = 30.0
MIN_BYTES_PER_S = 1024.0


@dataclass(frozen=True)
class Limits:
    """Byte caps: one audio file or archive member, one metadata file (CSV, lists in an archive)."""

    max_file_bytes: int = 2048 * MB
    max_metadata_bytes: int = 256 * MB

    @classmethod
    def from_mb(cls, file_mb: float, metadata_mb: float) -> Limits:
        return cls(max_file_bytes=int(file_mb * MB), max_metadata_bytes=int(metadata_mb * MB))


def describe_cap(limit: int, param: str) -> str:
    return f"larger than {param} ({limit / MB:g} MB)"


class TooLarge(Exception):
    """Content past a cap; `reason` names the param (the caller adds the location and the fix)."""

    def __init__(self, limit: int, param: str) -> None:
        self.reason = describe_cap(limit, param)
        super().__init__(self.reason)


class Stalled(Exception):
    """Fewer than MIN_BYTES_PER_S arrived on average over the last STALL_WINDOW_S."""


class StallWatch:
    """Call `update(total_bytes)` as bytes arrive; raises Stalled when a whole window passed with
    less than the minimum average speed."""

    def __init__(self) -> None:
        self.window_s = STALL_WINDOW_S
        self.min_rate = MIN_BYTES_PER_S
        self._start = time.monotonic()
        self._bytes = 0

    def update(self, total: int) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < self.window_s:
            return
        moved = total - self._bytes
        if moved < self.min_rate * elapsed:
            raise Stalled(
                f"the transfer stalled: {moved} bytes in the last {elapsed:.1f} s, under the minimum "
                f"{self.min_rate:g} bytes/s"
            )
        self._start, self._bytes = now, total

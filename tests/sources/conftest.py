"""Fixtures for the source tests: a local HTTP mirror with fault injection, fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import audioclf.fetch
from tests.sources.mirror_server import MirrorServer


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait 10 ms instead of 0.5 s, 1 s, ...: the behaviour is the same, the suite faster."""
    monkeypatch.setattr(audioclf.fetch, "BACKOFF_S", 0.01)


@pytest.fixture
def mirror_root(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    root.mkdir()
    return root


@pytest.fixture
def mirror(mirror_root: Path) -> Iterator[MirrorServer]:
    """An HTTP server on 127.0.0.1 (port chosen by the OS) serving `mirror_root`."""
    server = MirrorServer(mirror_root, slow_s=1.0).start()
    try:
        yield server
    finally:
        server.stop()

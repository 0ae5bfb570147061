"""Fixtures for the robustness suite: the loopback HTTP mirror of tests/sources (with its fault
injection and fast retries), and a tiny project folder layout."""

from __future__ import annotations

# the mirror fixtures, shared with the source tests (pytest registers what a conftest imports)
from tests.sources.conftest import fast_backoff, mirror, mirror_root  # noqa: F401

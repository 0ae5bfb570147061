"""Dataset sources: each lists its metadata first, then fetches only the selected rows.

A source is one class with a name, a preset (native sample rate, clip duration) and two methods:
`list_metadata()` returns every row the corpus offers (path relative to data/raw, label, fold,
group, plus the corpus's own columns) and `fetch_one(row, dest)` materialises one row's audio at
`dest` atomically. `download.run_download` does selection, parallelism, resume and the manifest.
"""

from __future__ import annotations

from audioclf.config import DataConfig
from audioclf.errors import AudioclfError
from audioclf.sources.base import Preset, Source
from audioclf.sources.synthetic import SyntheticSource

_REGISTRY: dict[str, type[Source]] = {
    SyntheticSource.name: SyntheticSource,
}


def get_source(cfg: DataConfig) -> Source:
    try:
        cls = _REGISTRY[cfg.dataset]
    except KeyError:
        raise AudioclfError(
            f"params: `data.dataset` {cfg.dataset!r} has no source in this version; "
            f"available: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return cls(cfg)


def get_preset(dataset: str) -> Preset:
    try:
        return _REGISTRY[dataset].preset
    except KeyError:
        raise AudioclfError(
            f"params: `data.dataset` {dataset!r} has no preset; set data.sample_rate and data.duration_s explicitly"
        ) from None


__all__ = ["Preset", "Source", "get_preset", "get_source"]

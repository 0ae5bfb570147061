"""Dataset sources: each lists its metadata first, then fetches only the selected rows.

A source is one class with a name, a preset (native sample rate, clip duration, class names) and
two methods: `list_metadata()` returns every row the corpus offers (path relative to data/raw,
label, fold, group, plus the corpus's own columns) and `fetch_one(row, dest)` materialises one
row's audio at `dest` atomically. `fetch_rows` runs `fetch_one` in a bounded thread pool; archive
sources override it with one pass through the archive. `download.run_download` does selection,
resume, the journal and the manifest. Network access goes through `audioclf.fetch`.
"""

from __future__ import annotations

from pathlib import Path

from audioclf.config import DataConfig
from audioclf.errors import AudioclfError
from audioclf.sources.base import Preset, Source
from audioclf.sources.csvsource import CSVSource
from audioclf.sources.esc50 import ESC50Source
from audioclf.sources.folder import FolderSource
from audioclf.sources.fsdd import FSDDSource
from audioclf.sources.speechcommands import SpeechCommandsSource
from audioclf.sources.synthetic import SyntheticSource
from audioclf.sources.urbansound8k import UrbanSound8KSource

_REGISTRY: dict[str, type[Source]] = {
    cls.name: cls
    for cls in (
        SyntheticSource,
        ESC50Source,
        FSDDSource,
        UrbanSound8KSource,
        SpeechCommandsSource,
        FolderSource,
        CSVSource,
    )
}


def get_source(cfg: DataConfig, cache_dir: Path | None = None, progress: bool = True) -> Source:
    """The source for `data.dataset`; `cache_dir` holds downloaded archives between runs."""
    try:
        cls = _REGISTRY[cfg.dataset]
    except KeyError:
        raise AudioclfError(
            f"params: `data.dataset` {cfg.dataset!r} has no source in this version; "
            f"available: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return cls(cfg, cache_dir=cache_dir, progress=progress)


def get_preset(dataset: str) -> Preset:
    try:
        return _REGISTRY[dataset].preset
    except KeyError:
        raise AudioclfError(
            f"params: `data.dataset` {dataset!r} has no preset; set data.sample_rate and data.duration_s explicitly"
        ) from None


__all__ = ["Preset", "Source", "get_preset", "get_source"]

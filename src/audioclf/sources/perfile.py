"""Sources whose files are fetched one request each from a base location (URL or folder)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from audioclf.errors import AudioclfError, brief
from audioclf.fetch import check_location, join
from audioclf.sources.base import Source


class PerFileSource(Source):
    """`fetch_one` = GET `<data.source>/<remote_path(row)>` into `dest` (validated audio)."""

    def remote_path(self, row: dict) -> str:
        """Where the row's file lives, relative to the source location."""
        raise NotImplementedError

    def fetch_one(self, row: dict, dest: Path) -> None:
        self.fetcher.fetch_file(join(self.location, self.remote_path(row)), dest)

    def read_csv(self, rel: str, required: tuple[str, ...]) -> pd.DataFrame:
        """A metadata CSV at `<data.source>/<rel>`, with its required columns checked."""
        check_location(self.location)
        uri = join(self.location, rel)
        data = self.fetcher.read_bytes(uri, what=f"{self.name} metadata")
        try:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (ValueError, pd.errors.ParserError) as exc:
            raise AudioclfError(f"{uri}: not a readable CSV ({brief(exc)}); check data.source") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise AudioclfError(
                f"{uri}: missing column(s) {missing} (has {list(frame.columns)}); is data.source a {self.name} mirror?"
            )
        return frame

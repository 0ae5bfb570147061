"""Your own list of clips: a CSV with a path-or-URL column and a label column (names are params),
optionally fold and group columns. One fetch per row.

`data.source` is the CSV's path or URL. A relative path in it is relative to the CSV's folder and
keeps its layout under data/raw/audio/; an absolute path or URL lands at
`audio/<hash>-<file name>` (the hash keeps equal names from different places apart).
"""

from __future__ import annotations

import hashlib
import io
import urllib.parse
from pathlib import Path

import pandas as pd

from audioclf.errors import AudioclfError, brief
from audioclf.fetch import basename, check_location, is_remote, join, parent, scheme_of
from audioclf.sources.base import Preset, Source, safe_relpath


class CSVSource(Source):
    name = "csv"
    preset = Preset(sample_rate=16_000, duration_s=5.0)  # as for `folder`

    def list_metadata(self) -> pd.DataFrame:
        cfg = self.cfg
        location = self.location
        check_location(location)
        data = self.fetcher.read_bytes(location, what="data CSV")
        try:
            # utf-8-sig: Excel writes a BOM, which would otherwise glue itself to the first column's name
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AudioclfError(f"{location}: not UTF-8 text ({exc.reason}); save the CSV as UTF-8") from None
        except (ValueError, pd.errors.ParserError) as exc:
            raise AudioclfError(f"{location}: not a readable CSV ({brief(exc)}); fix the file") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        columns = {
            "csv_path_column": cfg.csv_path_column,
            "csv_label_column": cfg.csv_label_column,
            "csv_fold_column": cfg.csv_fold_column,
            "csv_group_column": cfg.csv_group_column,
        }
        for key, column in columns.items():
            if column is not None and column not in frame.columns:
                raise AudioclfError(
                    f"params: `data.{key}` {column!r} is not a column of {location}; "
                    f"its columns: {', '.join(frame.columns)}"
                )
        if frame.empty:
            raise AudioclfError(f"{location}: has no rows; add one row per clip")
        sources = frame[cfg.csv_path_column].str.strip()
        labels = frame[cfg.csv_label_column].str.strip()
        for what, values in (("path", sources), ("label", labels)):
            if (values == "").any():
                line = int((values == "").to_numpy().argmax()) + 2  # 1-based, after the header
                raise AudioclfError(f"{location}: line {line} has an empty {what}; every row needs a path and a label")
        if cfg.csv_fold_column is not None:
            folds = pd.to_numeric(frame[cfg.csv_fold_column], errors="coerce")
            if folds.isna().any() or (folds != folds.round()).any():
                line = int((folds.isna() | (folds != folds.round())).to_numpy().argmax()) + 2
                raise AudioclfError(
                    f"{location}: line {line}: column {cfg.csv_fold_column!r} must hold integer folds; "
                    "fix it or set data.csv_fold_column: null"
                )
            folds = folds.astype(int)
        else:
            folds = pd.Series([None] * len(frame), dtype=object)
        groups = frame[cfg.csv_group_column].str.strip() if cfg.csv_group_column is not None else ""
        base = parent(location)
        uris = [self._resolve(s, base, location) for s in sources]
        extra = frame.drop(columns=[c for c in columns.values() if c is not None])
        extra = extra.drop(columns=[c for c in ("path", "label", "fold", "group", "source") if c in extra.columns])
        return pd.DataFrame(
            {
                "path": [self._dest(s, u) for s, u in zip(sources, uris, strict=True)],
                "label": labels,
                "fold": folds.to_numpy(),
                "group": groups,
                "source": uris,
                **{c: extra[c] for c in extra.columns},
            }
        )

    @staticmethod
    def _resolve(value: str, base: str, csv: str) -> str:
        """Row value → fetchable location: URLs and absolute paths as they are, else relative to the CSV.
        A CSV fetched over HTTP names no local files: its absolute paths are on its own server."""
        check_location(value, param=f"{csv} path column")
        if is_remote(csv):
            if scheme_of(value) == "file":
                raise AudioclfError(
                    f"{csv}: row {value!r} names a local file, which a CSV fetched over HTTP may not; "
                    "use URLs or paths relative to the CSV"
                )
            if not scheme_of(value) and value.startswith("/"):
                return urllib.parse.urljoin(csv, urllib.parse.quote(value))
        if scheme_of(value) or Path(value).expanduser().is_absolute():
            return value
        return join(base, value)

    @staticmethod
    def _dest(value: str, uri: str) -> str:
        if scheme_of(value) or Path(value).expanduser().is_absolute():
            tag = hashlib.sha256(uri.encode()).hexdigest()[:8]
            return f"audio/{tag}-{basename(uri)}"
        try:
            return "audio/" + safe_relpath(value)
        except AudioclfError:
            raise AudioclfError(
                f"csv row {value!r}: a relative path may not leave the CSV's folder; use an absolute path or URL"
            ) from None

    def fetch_one(self, row: dict, dest: Path) -> None:
        self.fetcher.fetch_file(row["source"], dest)

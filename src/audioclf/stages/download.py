"""download: list the dataset's metadata, select rows, fetch only those files (+ manifest)."""

from __future__ import annotations

from pathlib import Path

from audioclf.download import run_download
from audioclf.features import default_workers
from audioclf.sources import get_source
from audioclf.stages.common import params, parser, say


def main(argv: list[str] | None = None) -> None:
    p = parser("download", __doc__)
    p.add_argument("--out", type=Path, default=Path("data/raw"))
    args = p.parse_args(argv)
    cfg = params(args)
    report = run_download(get_source(cfg.data), args.out, workers=default_workers(cfg.runtime.workers) * 4)
    say(
        "download",
        f"{report.selected} rows selected from {cfg.data.dataset}: {report.fetched} fetched, "
        f"{report.reused} already present, {report.removed} stale files removed → {args.out}",
    )

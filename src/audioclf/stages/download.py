"""download: list the dataset's metadata, select rows, fetch only those files (+ manifest)."""

from __future__ import annotations

import os
from pathlib import Path

from audioclf.download import REJECTED, run_download
from audioclf.sources import get_source
from audioclf.sources.base import default_cache_dir
from audioclf.stages.common import params, parser, say


def main(argv: list[str] | None = None) -> None:
    p = parser("download", __doc__)
    p.add_argument("--out", type=Path, default=Path("data/raw"))
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("AUDIOCLF_CACHE_DIR") or default_cache_dir()),
        help="downloaded archives, kept between runs (default: $AUDIOCLF_CACHE_DIR or %(default)s)",
    )
    args = p.parse_args(argv)
    cfg = params(args)
    source = get_source(cfg.data, cache_dir=args.cache_dir)
    # fetching waits on the network, not the CPU: 4 requests in flight per core. (Not
    # audioclf.features.default_workers: that module imports torch, 2-5 s for nothing here.)
    cores = cfg.runtime.workers or os.cpu_count() or 1
    report = run_download(source, args.out, workers=cores * 4)
    say(
        "download",
        f"{report.selected} rows selected from {cfg.data.dataset}: {report.fetched} fetched, "
        f"{report.reused} already present, {report.removed} stale files removed → {args.out}"
        + (
            f"; {report.rejected} row(s) rejected (a refused path, a missing or oversized file, or not usable "
            f"audio; listed with the reason in {args.out / REJECTED}; the features stage skips them)"
            if report.rejected
            else ""
        ),
    )

"""Claim: parallel fetching (the download stage's default) beats one request at a time.

Serves N small WAV files from a local HTTP server (127.0.0.1, keep-alive) and runs the real
download path (`csv` source → shared session, validation, sha256, journal, manifest) with 1 worker
and with the stage's default (4 per core). A local server answers in microseconds, which hides
what parallelism buys on a real network; `--latency-ms` adds a per-request delay (a round trip)
to show that case too. Prints files/s for each and the ratio.

    python bench/bench_download.py [--files 500] [--latency-ms 0 20]
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.config import DataConfig
from audioclf.download import run_download
from audioclf.sources import get_source


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    # headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms per response, which would measure the toy server, not the fetcher
    disable_nagle_algorithm = True
    latency_s = 0.0

    def do_GET(self) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def make_files(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        rel = f"clips/c{i % 10}/{i:05d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16_000)  # 0.1 s, 3.2 kB
        rows.append([rel, f"c{i % 10}"])
    with open(root / "list.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return root / "list.csv"


def timed_run(url: str, workers: int, work: Path) -> float:
    raw = Path(tempfile.mkdtemp(dir=work))
    source = get_source(DataConfig(dataset="csv", source=url), cache_dir=work / "cache", progress=False)
    start = time.perf_counter()
    report = run_download(source, raw, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    assert report.fetched == report.selected
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    p.add_argument("--repeats", type=int, default=2, help="best of N runs per setting")
    args = p.parse_args()
    default_workers = (os.cpu_count() or 1) * 4  # what the download stage uses with runtime.workers: 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_files(work / "www", args.files)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(work / "www")))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/list.csv"
        print(f"{args.files} files of 3.2 kB from {url}, {os.cpu_count()} cores, best of {args.repeats}")
        print(f"{'latency':>8} {'1 worker':>14} {f'{default_workers} workers':>14} {'ratio':>7}")
        for latency in args.latency_ms:
            Handler.latency_s = latency / 1000
            one = min(timed_run(url, 1, work) for _ in range(args.repeats))
            many = min(timed_run(url, default_workers, work) for _ in range(args.repeats))
            rate1, rate_n = args.files / one, args.files / many
            print(f"{latency:>6.0f}ms {rate1:>10.0f} f/s {rate_n:>10.0f} f/s {rate_n / rate1:>6.2f}x")
        server.shutdown()


if __name__ == "__main__":
    main()

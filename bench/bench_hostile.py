"""Claim: a hostile source cannot make the download stage hold more than ~64 MB, whatever it sends.

Five 200 MB hostile inputs, each served from a loopback HTTP mirror (tests/sources/mirror_server)
and fetched by the real download stage (`audioclf.stages.download.main`) in a fresh child
process, whose peak RSS growth over its baseline (after imports) is measured via
/proc/self/status (VmHWM after resetting it through /proc/self/clear_refs):

- gzip_audio: one clip served with `Content-Encoding: gzip`, 200 MB decoded from ~0.2 MB
- chunked_audio: one clip sent chunked, no Content-Length, 200 MB
- gzip_metadata: the corpus CSV gzip-encoded, 200 MB of padding decoded from ~0.2 MB
- archive_member: a 200 MB silent WAV member in a ~0.2 MB UrbanSound8K-layout tar.gz
- archive_metadata: the archive's metadata CSV padded with 200 MB of NUL bytes

The caps are `data.max_file_mb: 16` / `data.max_metadata_mb: 16` (the archive cases use the
urbansound8k preset: 32 / 16). `--before PATH` also runs each case against another checkout's
`src` (e.g. the main branch) for comparison; there the cap keys are left out. Prints, per case:
peak growth (MB), the outcome (first words of the error, or "ok"), bytes of it left in data/raw
and the archive cache, and the ratio to the 64 MB target.

    python bench/bench_hostile.py [--mb 200] [--before OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.sources.corpus_mirror import build_us8k, make_tar  # noqa: E402
from tests.sources.mirror_server import MirrorServer  # noqa: E402

TARGET_MB = 64
CHILD = r"""
import json, os, sys, time
from pathlib import Path
import yaml
from audioclf.stages import download
from audioclf.errors import AudioclfError

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
work, data = Path(sys.argv[1]), json.loads(sys.argv[2])
(work / "params.yaml").write_text(yaml.safe_dump({"data": data, "runtime": {"workers": 1}}))
argv = ["--params", str(work / "params.yaml"), "--out", str(work / "raw"), "--cache-dir", str(work / "cache")]
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
except OSError:
    pass
base = status("VmRSS")
outcome = "ok"
try:
    download.main(argv)
    rejected = work / "raw" / "rejected.csv"
    if rejected.is_file():
        lines = rejected.read_text().splitlines()[1:]
        outcome = f"ok, {len(lines)} row(s) rejected: {lines[0] if lines else ''}"
except AudioclfError as exc:
    outcome = str(exc)
print(json.dumps({"base_mb": base, "peak_mb": status("VmHWM"), "outcome": outcome}))
"""


def silent_wav(path: Path, mb: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", 16_000, 1, subtype="PCM_16") as fh:
        block = np.zeros(1 << 20, np.int16)
        for _ in range(mb // 2):
            fh.write(block)
    return path


def csv_corpus(root: Path, big_mb: int) -> None:
    clips = root / "clips"
    (clips / "a").mkdir(parents=True)
    t = np.arange(4000) / 16_000
    for i in range(4):
        sf.write(clips / "a" / f"{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t)).astype(np.float32), 16_000)
    silent_wav(clips / "a" / "big.wav", big_mb)
    rows = [f"a/{i}.wav" for i in range(4)] + ["a/big.wav"]
    pd.DataFrame({"path": rows, "label": ["x", "y", "x", "y", "x"]}).to_csv(clips / "clips.csv", index=False)
    with open(clips / "padded.csv", "wb") as fh:  # the same CSV plus blank lines (pandas skips them)
        fh.write((clips / "clips.csv").read_bytes())
        for _ in range(big_mb):
            fh.write(b"\n" * (1 << 20))


def us8k_archives(root: Path, big_mb: int) -> None:
    tree = root / "tree"
    build_us8k(tree)
    member = tree / "UrbanSound8K/audio/fold1/10310-3-0-0.wav"
    keep = member.read_bytes()
    silent_wav(member, big_mb)
    make_tar(tree, root / "member" / "UrbanSound8K.tar.gz")
    member.write_bytes(keep)
    csv = tree / "UrbanSound8K/metadata/UrbanSound8K.csv"
    with open(csv, "ab") as fh:
        for _ in range(big_mb):
            fh.write(b"\0" * (1 << 20))
    make_tar(tree, root / "meta" / "UrbanSound8K.tar.gz")


def cases(url: str, mirror: MirrorServer) -> dict[str, tuple[dict, dict, callable]]:
    """name: (data params, the cap params, arm the mirror's faults)."""
    csv_source = {"dataset": "csv", "source": url + "clips/clips.csv"}
    return {
        "gzip_audio": (csv_source, {"max_file_mb": 16}, lambda: mirror.fail("clips/a/big.wav", *["gzip"] * 10)),
        "chunked_audio": (csv_source, {"max_file_mb": 16}, lambda: mirror.fail("clips/a/big.wav", *["chunked"] * 10)),
        "gzip_metadata": ({"dataset": "csv", "source": url + "clips/padded.csv"}, {"max_metadata_mb": 16},
                          lambda: mirror.fail("clips/padded.csv", *["gzip"] * 10)),
        "archive_member": ({"dataset": "urbansound8k", "source": url + "member/UrbanSound8K.tar.gz"}, {}, lambda: None),
        "archive_metadata": ({"dataset": "urbansound8k", "source": url + "meta/UrbanSound8K.tar.gz"}, {}, lambda: None),
    }  # fmt: skip


def left_behind(work: Path, big_mb: int) -> int:
    """Bytes under data/raw and the archive cache in files of at least a tenth of the hostile size."""
    return sum(
        p.stat().st_size for p in work.rglob("*") if p.is_file() and p.stat().st_size >= big_mb * (1 << 20) // 10
    )


def run_case(src: Path, work: Path, data: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "AUDIOCLF_CACHE_DIR": str(work / "cache")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(work), json.dumps(data)], env=env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    if out.returncode != 0:
        return {"growth_mb": float("nan"), "outcome": f"crashed: {out.stderr.strip().splitlines()[-1][:80]}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"growth_mb": result["peak_mb"] - result["base_mb"], "outcome": result["outcome"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="size of each hostile input (default 200)")
    ap.add_argument("--before", type=Path, help="another checkout's src/ to compare with (caps left out)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mirror"
        csv_corpus(root, args.mb)
        us8k_archives(root, args.mb)
        mirror = MirrorServer(root).start()
        try:
            variants = [("this branch", REPO / "src", True)]
            if args.before:
                variants.append(("before", args.before, False))
            print(f"hostile input: {args.mb} MB each; target: peak growth <= {TARGET_MB} MB")
            print(f"{'case':<18}{'code':<13}{'peak growth MB':>15}{'x target':>10}{'left MB':>9}  outcome")
            for name, (data, caps, arm) in cases(mirror.url, mirror).items():
                for label, src, capped in variants:
                    work = Path(tmp) / f"{name}-{label.replace(' ', '_')}"
                    work.mkdir()
                    mirror._faults.clear()
                    arm()
                    result = run_case(src, work, {**data, **(caps if capped else {})})
                    left = left_behind(work, args.mb) / (1 << 20)
                    outcome = " ".join(result["outcome"].split()[:14])
                    print(f"{name:<18}{label:<13}{result['growth_mb']:>15.1f}{result['growth_mb'] / TARGET_MB:>10.2f}"
                          f"{left:>9.1f}  {outcome}")  # fmt: skip
        finally:
            mirror.stop()


if __name__ == "__main__":
    main()

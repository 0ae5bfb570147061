"""Claims of docs/deployment.md about serving speed and memory:

1. latency at batch 1 and 32 of PyTorch eager and every ONNX variant, per clip length (1 s: the
   built-in set's model; 5 s: ESC-50 at 16 kHz), timed in interleaved rounds in one process with
   the same threads, with the ratios (ONNX vs torch, int8 vs fp32); the previous graph (with
   onnxruntime's STFT op) as a reference row;
2. streaming real-time factor on one core (`Model.stream`, pinned to one CPU, one thread);
3. end-to-end latency of `audioclf predict --stream` (last sample of a window written → its JSON
   line read), with PCM written in real time;
4. peak memory (max RSS) of `audioclf predict` on a 2-hour 16 kHz file.

"torch eager" is the same waveform → logits module (the pipeline's FeatureExtractor and the
default convnet) in fp32 under `torch.inference_mode()`. Weights are the trained model's when
`--models` has one for that clip length, else freshly initialised (latency does not depend on
the weights' values). Real clips: `--esc50` (ESC-50 audio folder) when present, else synthetic.

    nice -n 15 python bench/bench_predict.py [--esc50 ../shared/data/esc50-dev/audio] [--rounds 200]
        [--threads 1] [--skip-memory | --only-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioclf import export, load_model
from audioclf.audio import load_clip
from audioclf.config import FeaturesConfig
from audioclf.deploy import DeploySidecar, sidecar_path
from audioclf.features import FeatureExtractor
from audioclf.models.convnet import ConvNetParams
from audioclf.network import build_model
from audioclf.runtime import available_cores

SAMPLE_RATE = 16000
CHANNELS = [16, 32, 64, 128]  # params.yaml's default convnet


def real_clips(esc50: Path, seconds: float, n: int) -> np.ndarray:
    """(n, samples) float32 at 16 kHz: ESC-50 clips (cut to `seconds`), or synthetic noise bursts."""
    n_samples = int(seconds * SAMPLE_RATE)
    files = sorted(esc50.glob("*.wav"))[:n] if esc50.is_dir() else []
    if files:
        return np.stack([load_clip(f, SAMPLE_RATE, n_samples) for f in files])
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((n, n_samples))).astype(np.float32)


def build(seconds: float, n_classes: int, tmp: Path, calib: np.ndarray) -> tuple[torch.nn.Module, dict[str, Path]]:
    """The waveform → logits module and its ONNX variants (+ the STFT-op graph as a reference)."""
    torch.manual_seed(0)
    n_samples = int(seconds * SAMPLE_RATE)
    extractor = FeatureExtractor(FeaturesConfig(), SAMPLE_RATE)
    with torch.no_grad():
        feats = extractor(torch.from_numpy(calib[:16]))
    mean, std = feats.mean(dim=(0, 3)), feats.std(dim=(0, 3)) + 1e-3
    net = build_model("convnet", 1, n_classes, mean, std, ConvNetParams(CHANNELS, 0.2))
    full = export.WaveformClassifier(extractor, net).eval()
    paths = {v: tmp / f"{seconds:g}s_{v}.onnx" for v in ("fp32", "fp16", "int8_static", "int8_dynamic", "stft_op")}
    export.export_onnx(full, n_samples, paths["fp32"], 18)
    export.export_onnx(full, n_samples, paths["stft_op"], 18, friendly=False)
    export.quantize_fp16_weights(paths["fp32"], paths["fp16"])
    export.quantize_int8_static(paths["fp32"], paths["int8_static"], calib)
    export.quantize_int8_dynamic(paths["fp32"], paths["int8_dynamic"])
    return full, paths


def latency_table(seconds: float, n_classes: int, esc50: Path, rounds: int, threads: int, tmp: Path) -> dict:
    # one thread: CPU time of the calling thread (both runtimes compute in it), blind to the
    # other processes of a shared machine; more threads: wall time, interleaved
    clock = time.thread_time if threads == 1 else time.perf_counter
    clips = real_clips(esc50, seconds, 64)
    full, paths = build(seconds, n_classes, tmp, clips[:32])
    sessions = {v: export.session(p, threads) for v, p in paths.items()}
    result = {}
    for key, batch, n_rounds in (("b1", clips[:1], rounds), ("b32", clips[:32], max(5, rounds // 10))):
        wave = torch.from_numpy(batch)

        def eager(w: torch.Tensor = wave) -> object:
            with torch.inference_mode():
                return full(w)

        fns = {"torch": eager} | {v: (lambda s=s, b=batch: export.run_onnx(s, b)) for v, s in sessions.items()}
        result[key] = export.interleaved_latency_ms(fns, n_rounds, warmup=5, clock=clock)
    with torch.inference_mode():
        want = full(torch.from_numpy(clips[:8])).numpy()
    result["max_abs_diff_fp32"] = float(np.abs(export.run_onnx(sessions["fp32"], clips[:8]) - want).max())
    result["size_mb"] = {v: round(p.stat().st_size / 1e6, 3) for v, p in paths.items()}
    return result


def print_latency(seconds: float, res: dict) -> None:
    print(f"\n{seconds:g} s clips (max |Δlogit| fp32 vs torch {res['max_abs_diff_fp32']:.1e})")
    cols = f"{'b1 ms':>8} {'b32 ms':>8} {'vs torch b1':>11} {'vs torch b32':>12} {'vs fp32 b1':>10}"
    print(f"{'variant':>13} {'MB':>6} {cols}")
    for name in ("torch", "fp32", "fp16", "int8_static", "int8_dynamic", "stft_op"):
        b1, b32 = res["b1"][name], res["b32"][name]
        size = res["size_mb"].get(name, float("nan"))
        print(
            f"{name:>13} {size:>6.2f} {b1:>8.2f} {b32:>8.1f} {res['b1']['torch'] / b1:>10.2f}x "
            f"{res['b32']['torch'] / b32:>11.2f}x {res['b1']['fp32'] / b1:>9.2f}x"
        )


def deploy(paths_fp32: Path, seconds: float, n_classes: int, out: Path) -> Path:
    """A shipped model.onnx + sidecar from a bench export (for the API and the CLI)."""
    model = out / f"model_{seconds:g}s.onnx"
    classes = [f"c{i}" for i in range(n_classes)]
    n = int(seconds * SAMPLE_RATE)
    export.deploy_copy(paths_fp32, model, classes, SAMPLE_RATE, n)
    side = DeploySidecar(classes, SAMPLE_RATE, n, seconds, variant="fp32")
    sidecar_path(model).write_text(side.to_json())
    return model


def stream_rtf(model_path: Path, audio: np.ndarray, rate: int) -> tuple[float, float]:
    """Real-time factor of Model.stream on one core and one thread: seconds of audio per second
    of wall time, and per second of this process's CPU time (what an idle core would give)."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        model = load_model(model_path, threads=1)
        pcm = (audio * 32767).astype(np.int16)
        chunks = [pcm[i : i + 1600] for i in range(0, len(pcm), 1600)]  # 100 ms at 16 kHz
        list(model.stream(iter(chunks[:40]), rate))  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(1 for _ in model.stream(iter(chunks), rate))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        os.sched_setaffinity(0, affinity)
    assert n > 0
    seconds = len(audio) / rate
    return seconds / elapsed, seconds / cpu


def end_to_end_latency(model_path: Path, audio: np.ndarray, chunk_ms: int = 10) -> list[float]:
    """ms from writing the last sample of each window to reading its JSON line, at real time."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "audioclf", "predict", "--stream", "--rate", str(SAMPLE_RATE),
         "--model", str(model_path), "--threads", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.readline()  # the header: the model is loaded
    pcm = (audio * 32767).astype("<i2")
    step = SAMPLE_RATE * chunk_ms // 1000
    written: dict[int, float] = {}  # samples written so far → time

    def writer() -> None:
        t0 = time.perf_counter()
        for i in range(0, len(pcm), step):
            proc.stdin.write(pcm[i : i + step].tobytes())
            proc.stdin.flush()
            written[min(len(pcm), i + step)] = time.perf_counter()
            time.sleep(max(0.0, t0 + (i + step) / SAMPLE_RATE - time.perf_counter()))
        proc.stdin.close()

    thread = threading.Thread(target=writer)
    thread.start()
    latencies = []
    for line in proc.stdout:
        now = time.perf_counter()
        end = round(json.loads(line)["end"] * SAMPLE_RATE)
        done = min((n for n in written if n >= end), default=None)
        if done is not None and end < len(pcm):  # the final end-aligned window waits for EOF
            latencies.append((now - written[done]) * 1000)
    thread.join()
    proc.wait()
    return latencies


def peak_memory_mb(model_path: Path, tmp: Path, hours: float = 2.0) -> tuple[float, float, int]:
    """Max RSS (MB) and wall time of `audioclf predict` on a `hours`-long 16 kHz PCM-16 WAV."""
    path = tmp / "two_hours.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as out:
        for _ in range(int(hours * 3600 / 60)):
            out.write((0.05 * rng.standard_normal(60 * SAMPLE_RATE)).astype(np.float32))
    start = time.perf_counter()
    # VmHWM of the child's own address space: ru_maxrss would include this (large) parent's RSS,
    # which Linux carries over fork and exec
    wrap = (
        "import sys; from pathlib import Path; from audioclf.cli import main; code = main(sys.argv[2:]); "
        "hwm = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')]; "
        "Path(sys.argv[1]).write_text(hwm[0].split()[1]); sys.exit(code)"
    )
    argv = [sys.executable, "-c", wrap, str(tmp / "hwm"), "predict", str(path), "--model", str(model_path), "--json"]
    with (tmp / "out.json").open("wb") as out:
        subprocess.run([*argv, "--hop", "1"], stdout=out, stderr=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    peak_mb = int((tmp / "hwm").read_text()) / 1024
    n_windows = len(json.loads((tmp / "out.json").read_text())["predictions"][0]["segments"])
    path.unlink()
    return peak_mb, elapsed, n_windows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--esc50", type=Path, default=Path("../shared/data/esc50-dev/audio"))
    p.add_argument("--rounds", type=int, default=100, help="interleaved rounds at batch 1 (b32: a tenth)")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads; 0 = the cores")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--only-memory", action="store_true", help="just the 2-hour file (1 s model)")
    args = p.parse_args()
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    vnni = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512f", "avx2") if f in flags]
    print(f"threads {threads} (cores {available_cores()}); CPU int8/vector flags: {', '.join(vnni) or 'none'}")
    print(f"load average {os.getloadavg()[0]:.1f}; timing: {'thread CPU time' if threads == 1 else 'wall'}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.only_memory:
            torch.manual_seed(0)
            extractor = FeatureExtractor(FeaturesConfig(), SAMPLE_RATE)
            net = build_model("convnet", 1, 10, torch.zeros(64), torch.ones(64), ConvNetParams(CHANNELS, 0.2))
            export.export_onnx(export.WaveformClassifier(extractor, net), SAMPLE_RATE, tmp / "fp32.onnx", 18)
            peak, elapsed, n = peak_memory_mb(deploy(tmp / "fp32.onnx", 1.0, 10, tmp), tmp)
            print(f"2-hour 16 kHz file, 1 s model, hop 1 s: peak RSS {peak:.0f} MB, {elapsed:.1f} s, {n} windows")
            return
        models = {}
        for seconds, n_classes in ((1.0, 10), (5.0, 50)):
            res = latency_table(seconds, n_classes, args.esc50, args.rounds, threads, tmp)
            print_latency(seconds, res)
            models[seconds] = deploy(tmp / f"{seconds:g}s_fp32.onnx", seconds, n_classes, tmp)
        audio = real_clips(args.esc50, 5.0, 24).reshape(-1)  # 2 minutes of real sound
        for seconds, model in models.items():
            wall, cpu = stream_rtf(model, audio, SAMPLE_RATE)
            rtf = f"real-time factor {cpu:.0f}x (CPU time), {wall:.0f}x (wall)"
            print(f"stream, {seconds:g} s model, default hop, one core: {rtf}")
        lat = end_to_end_latency(models[1.0], audio[: 6 * SAMPLE_RATE])
        print(
            f"end-to-end (1 s model, PCM written in real time, 10 ms chunks): median {np.median(lat):.1f} ms, "
            f"max {np.max(lat):.1f} ms over {len(lat)} windows"
        )
        if not args.skip_memory:
            peak, elapsed, n = peak_memory_mb(models[1.0], tmp)
            print(f"2-hour 16 kHz file, 1 s model, hop 1 s: peak RSS {peak:.0f} MB, {elapsed:.1f} s, {n} windows")


if __name__ == "__main__":
    main()

"""Synthetic speech stand-ins (no real speech is at hand): spoken digits, command words and
languages rendered by espeak-ng with many voices, speeds and pitches, as a CSV corpus whose fold
is the voice's, so holding folds out holds voices out (a speaker-independent test).

    python bench/make_speech_corpus.py digits OUT      # 10 digits, 1 s clips
    python bench/make_speech_corpus.py words OUT       # 10 command words, 1 s clips
    python bench/make_speech_corpus.py languages OUT   # 6 languages, 3 s clips

OUT gets `audio/<label>/<voice>_<n>.wav`, `metadata.csv` (path, label, fold, voice: the project's
csv source with `data.csv_fold_column=fold data.csv_group_column=voice`) and `seed.csv`
(filename, label, split for the seed-style reference: fold 5 test, fold 4 val, the rest train).
Voices are espeak-ng variants, 4 per fold; clips get a random lead-in and a little noise so
silence is not a cue. Everything is seeded: the same command writes the same corpus. Figures
measured on it are on synthetic speech, not on recordings.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

VOICES = (  # espeak-ng variants: 20 voices, fold = index // 4 + 1
    "m1", "f1", "m2", "f2",
    "m3", "f3", "m4", "f4",
    "m5", "f5", "m6", "klatt",
    "m7", "klatt2", "croak", "klatt3",
    "m8", "grandma", "grandpa", "klatt4",
)  # fmt: skip
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
PHRASES = {  # short everyday sentences per language (espeak voice: texts)
    "en-us": ("good morning, how are you today", "the train leaves at seven", "please close the door",
              "I would like a cup of coffee", "where is the station"),
    "de": ("guten Morgen, wie geht es dir heute", "der Zug fährt um sieben", "bitte schließ die Tür",
           "ich hätte gern eine Tasse Kaffee", "wo ist der Bahnhof"),
    "fr": ("bonjour, comment allez-vous aujourd'hui", "le train part à sept heures", "fermez la porte s'il vous plaît",
           "je voudrais une tasse de café", "où est la gare"),
    "es": ("buenos días, cómo estás hoy", "el tren sale a las siete", "por favor cierra la puerta",
           "quisiera una taza de café", "dónde está la estación"),
    "it": ("buongiorno, come stai oggi", "il treno parte alle sette", "per favore chiudi la porta",
           "vorrei una tazza di caffè", "dov'è la stazione"),
    "pl": ("dzień dobry, jak się masz dzisiaj", "pociąg odjeżdża o siódmej", "proszę zamknij drzwi",
           "poproszę filiżankę kawy", "gdzie jest dworzec"),
}  # fmt: skip
SPEEDS = (120, 150, 180, 210)  # words per minute
PITCHES = (25, 50, 75)  # espeak 0..99


def render(text: str, voice: str, speed: int, pitch: int, tmp: Path) -> tuple[np.ndarray, int]:
    out = tmp / "x.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    wave, sr = sf.read(out, dtype="float32")
    return wave, sr


def items(task: str) -> list[tuple[str, str, str]]:
    """(label, espeak language, text) of every utterance of one voice."""
    if task == "languages":
        return [(lang.split("-")[0], lang, text) for lang, texts in PHRASES.items() for text in texts]
    words = DIGITS if task == "digits" else WORDS
    return [(w, "en-us", w) for w in words]


def build(task: str, out: Path, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    shutil.rmtree(out / "audio", ignore_errors=True)
    rows, seed_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(VOICES):
            fold = v // 4 + 1
            for n, (label, lang, text) in enumerate(
                it for it in items(task) for _ in range(2 if task == "languages" else 4)
            ):
                speed, pitch = int(rng.choice(SPEEDS)), int(rng.choice(PITCHES))
                wave, sr = render(text, f"{lang}+{voice}", speed, pitch, Path(tmp))
                lead = np.zeros(int(rng.uniform(0.0, 0.25) * sr), dtype=np.float32)
                wave = np.concatenate([lead, wave]) * rng.uniform(0.3, 1.0)
                wave = wave + rng.normal(0, 10 ** rng.uniform(-3.5, -2.5), wave.shape).astype(np.float32)
                rel = Path("audio") / label / f"{voice}_{n:03d}.wav"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(out / rel, np.clip(wave, -1, 1), sr, subtype="PCM_16")
                rows.append({"path": rel.as_posix(), "label": label, "fold": fold, "voice": voice})
                split = "test" if fold == 5 else "val" if fold == 4 else "train"
                seed_rows.append({"filename": rel.as_posix(), "label": label, "split": split})
    for name, table in (("metadata.csv", rows), ("seed.csv", seed_rows)):
        with open(out / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=("digits", "words", "languages"))
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found; install it (Debian/Ubuntu: apt-get install -y espeak-ng)")
    n = build(args.task, args.out, args.seed)
    print(f"{args.out}: {n} clips of synthetic speech, {len(VOICES)} voices in 5 folds of 4 (fold 5 = held-out voices)")


if __name__ == "__main__":
    main()

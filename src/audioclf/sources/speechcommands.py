"""Speech Commands (Warden 2018): one-second utterances of short words, one folder per word.

One archive per version: v0.01 (30 words, ~65k clips, as the Speech Commands tutorial used) and
v0.02 (35 words, ~106k clips). The official split comes from `validation_list.txt` and
`testing_list.txt` (files are assigned by a hash of the speaker id, so speakers never cross splits):
fold 1 = train, 2 = validation, 3 = test. The group is the speaker hash in `<hash>_nohash_<n>.wav`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from audioclf.errors import AudioclfError
from audioclf.sources.archived import ArchiveSource
from audioclf.sources.base import Preset

WORDS_V1 = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop", "three",
    "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
WORDS = {"v0.01": WORDS_V1, "v0.02": tuple(sorted((*WORDS_V1, "backward", "follow", "forward", "learn", "visual")))}
DEFAULT_VERSION = "v0.02"
FOLDS = {"train": 1, "validation": 2, "testing": 3}


class SpeechCommandsSource(ArchiveSource):
    name = "speechcommands"
    preset = Preset(
        sample_rate=16_000,
        duration_s=1.0,
        classes=WORDS[DEFAULT_VERSION],
        max_file_mb=16,
        max_metadata_mb=16,
        test_fold=3,  # the official lists
        val_fold=2,
    )
    default_source = "https://storage.googleapis.com/download.tensorflow.org/data/"
    versions = tuple(WORDS)
    marker = "testing_list.txt"
    capture = ("validation_list.txt", "testing_list.txt")

    @property
    def version(self) -> str:
        return self.cfg.version or DEFAULT_VERSION

    def archive_name(self) -> str:
        return f"speech_commands_{self.version}.tar.gz"

    def known_classes(self) -> tuple[str, ...]:
        return WORDS[self.version]

    def build_metadata(self, files: list[str], read_text: Callable[[str], str]) -> pd.DataFrame:
        official = {}
        for split in ("validation", "testing"):
            for line in read_text(f"{split}_list.txt").splitlines():
                if line.strip():
                    official[line.strip().removeprefix("./")] = split
        vocabulary = set(WORDS[self.version])
        rows = []
        for rel in files:
            word, _, file = rel.partition("/")
            if not file or "/" in file or word.startswith("_") or not file.lower().endswith(".wav"):
                continue  # _background_noise_/, README.md, LICENSE, the lists: not labelled clips
            if word not in vocabulary:
                raise AudioclfError(
                    f"{self.location}: has the word folder {word!r}, which {self.version} lacks; "
                    f"set data.version to the archive's version ({' or '.join(self.versions)})"
                )
            speaker, sep, _ = file.partition("_nohash_")
            if not sep:
                raise AudioclfError(
                    f"{self.location}: {rel} is not named <speaker>_nohash_<n>.wav; is it Speech Commands"
                )
            split = official.get(rel, "train")  # list entries missing from a partial archive are ignored
            rows.append(
                {
                    "path": f"audio/{rel}",
                    "label": word,
                    "fold": FOLDS[split],
                    "group": speaker,
                    "official_split": split,
                }
            )
        if not rows:
            raise AudioclfError(f"{self.location}: no <word>/<file>.wav clips found; is it Speech Commands?")
        return pd.DataFrame(rows)

    def member(self, row: dict) -> str:
        return row["path"].removeprefix("audio/")

"""The `audioclf` command: one subcommand per pipeline stage, plus the user-facing tools.

Imports are lazy so `audioclf predict` never imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Callable

from audioclf import procs
from audioclf.errors import AudioclfError

STAGES = ("download", "split", "features", "train", "evaluate", "quantize", "cv")
TOOLS: dict[str, tuple[str, str]] = {
    # name: (module with main(argv), one-line help)
    "check-metrics": ("audioclf.gate", "compare metrics with a baseline under tolerances; exit 1 on regression"),
    "predict": ("audioclf.predict", "top-k labels for audio files or folders with the deployed ONNX model"),
}
# OSErrors of the machine, not of the code: a full disk, a quota, a read-only or forbidden folder
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def _usage() -> str:
    tools = "".join(f"  audioclf {name:<14} {help_}\n" for name, (_, help_) in TOOLS.items())
    return (
        "usage: audioclf COMMAND [ARGS...]\n\n"
        "pipeline stages (what dvc.yaml runs):\n"
        f"  audioclf stage {{{','.join(STAGES)}}} [--params params.yaml] [paths...]\n\n"
        f"tools:\n{tools}\n"
        "Add --help after any command for its options. AUDIOCLF_DEBUG=1 shows tracebacks of errors."
    )


def _resolve(argv: list[str]) -> tuple[Callable[[list[str]], object], list[str]]:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command == "stage":
        if rest and rest[0] in ("-h", "--help"):
            print(
                f"usage: audioclf stage {{{','.join(STAGES)}}} [--params params.yaml] [paths...]\n\n"
                "Runs one pipeline stage (what dvc.yaml calls; `dvc repro` runs them in order).\n"
                "`audioclf stage NAME --help` lists the options of one stage."
            )
            sys.exit(0)
        if not rest or rest[0] not in STAGES:
            raise AudioclfError(f"audioclf stage: name one of {', '.join(STAGES)}")
        module = importlib.import_module(f"audioclf.stages.{rest[0]}")
        return module.main, rest[1:]
    if command in TOOLS:
        return importlib.import_module(TOOLS[command][0]).main, rest
    raise AudioclfError(f"unknown command {command!r}; run `audioclf --help` for the list")


def _lock_name(args: list[str]) -> str:
    """The stage and its leading positional words: `cv fold 3` may run beside `cv fold 4`."""
    words = []
    for arg in args:
        if arg.startswith("-"):
            break
        words.append("".join(c if c.isalnum() or c in "._" else "_" for c in arg)[:40])
    return "-".join(words[:3])


def _ignore_half_built_bars() -> None:
    """A signal that lands inside tqdm's constructor leaves a bar without `pos`; its `__del__`
    then prints an AttributeError traceback after our one-line message. Drop only that one."""
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        half_built = isinstance(unraisable.exc_value, AttributeError) and "tqdm" in repr(unraisable.object)
        if not half_built:
            previous(unraisable)

    sys.unraisablehook = hook


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    procs.handle_sigterm()
    try:
        entry, rest = _resolve(argv)
        # one run of a stage per project at a time (a second one would delete the first's temp files)
        lock = procs.stage_lock(_lock_name(argv[1:])) if argv[0] == "stage" else contextlib.nullcontext()
        with lock:
            code = entry(rest)
        if procs.was_terminated():  # SIGTERM whose exception Python swallowed: still a terminated run
            raise procs.Terminated()
    except AudioclfError as exc:
        if os.environ.get("AUDIOCLF_DEBUG") == "1":
            raise
        print(f"audioclf: error: {exc}", file=sys.stderr)
        return 2
    except procs.Terminated:
        _ignore_half_built_bars()
        print("audioclf: terminated (SIGTERM); rerun the same command to continue", file=sys.stderr)
        return procs.EXIT_TERMINATED
    except KeyboardInterrupt:
        _ignore_half_built_bars()
        print("audioclf: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS or os.environ.get("AUDIOCLF_DEBUG") == "1":
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        fix = "free space and rerun (outputs are replaced only when complete)" if full else "check the permissions"
        print(f"audioclf: error: {where}{exc.strerror or exc}; {fix}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

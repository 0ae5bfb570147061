"""Shared fixtures: a tiny params file and a tiny run of the pipeline's stages in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import write_params

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage of the pipeline run once, in-process, on the tiny config. Returns the work dir
    (data/, models/, metrics/ inside). Tests must treat it as read-only."""
    from audioclf.stages import download, evaluate, features, quantize, split, train

    work = tmp_path_factory.mktemp("tiny_run")
    params = write_params(work / "params.yaml")
    cwd = os.getcwd()
    os.chdir(work)  # the stages' default paths are relative to the project root
    try:
        for stage in (download, split, features, train, evaluate, quantize):
            stage.main(["--params", str(params)])
    finally:
        os.chdir(cwd)
    return work


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test (bit-identical reruns, no fighting over the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

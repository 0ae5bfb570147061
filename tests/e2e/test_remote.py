"""Sharing results through a DVC remote, against a real S3-compatible server on 127.0.0.1.

moto's standalone server (from the package registry) plays the S3 store, with IAM enforced: a
writer key that may push, and a reader key that may only pull. One clone reproduces the tiny
pipeline and pushes; a second clone pulls everything and has byte-identical outputs, a clean
`dvc status` (local and cloud), a `dvc repro` that runs nothing, and a working `audioclf predict`
where torch cannot be imported; a third pulls only the deployable model. Credentials never enter
git: the writer's are in `.dvc/config.local` (`dvc remote modify --local`), the reader's in the
environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.common import run, stages_ran, tiny_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
boto3 = pytest.importorskip("boto3", reason="dvc-s3 (requirements.txt) brings boto3")

BUCKET = "audioclf-test"
# the tiny params, smaller still: this test is about moving files, not about the model
FAST = {"train": {"epochs": 1}, "quantize": {"variants": ["fp32"], "latency_runs": 1}}
SETUP_REQUESTS = 7  # unauthenticated requests moto allows before it enforces IAM (see _users)
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchaudio")):
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, _NoTorch())
from audioclf.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
sys.exit(code)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _users(endpoint: str) -> dict[str, tuple[str, str]]:
    """The bucket, and two IAM users with access keys: `writer` (all of S3) and `reader` (get and
    list only). Exactly SETUP_REQUESTS requests, made before moto starts checking signatures."""
    setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    setup |= {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **setup)
    keys = {}
    for name, actions in (("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])):
        iam.create_user(UserName=name)
        statement = {
            "Effect": "Allow",
            "Action": actions,
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    return keys


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """A moto S3 server on 127.0.0.1 for this module; yields (endpoint URL, IAM keys)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield endpoint, _users(endpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _aws_env(key: tuple[str, str] | None, home: Path) -> dict[str, str]:
    """No credentials or AWS config from the machine running the test; `key` in the environment."""
    env = {"AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none")}
    env |= {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    if key:
        env |= {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}
    return env


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for top in ("data", "models", "metrics"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_push_from_one_clone_pull_into_another(s3, tmp_path: Path):
    endpoint, keys = s3
    origin = tiny_project(tmp_path / "origin", FAST, skip=("cv/",))  # the CV pipeline is not shared here
    no_key = _aws_env(None, tmp_path)
    # the remote's location is shared in git; the writer's secret only in .dvc/config.local
    run(["dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/cache"], origin)
    run(["dvc", "remote", "modify", "storage", "endpointurl", endpoint], origin)
    run(["dvc", "remote", "modify", "storage", "region", "us-east-1"], origin)
    run(["dvc", "remote", "modify", "--local", "storage", "access_key_id", keys["writer"][0]], origin)
    run(["dvc", "remote", "modify", "--local", "storage", "secret_access_key", keys["writer"][1]], origin)
    assert stages_ran(run(["dvc", "repro"], origin, no_key)) == [
        "download", "split", "features", "train", "evaluate", "quantize"
    ]  # fmt: skip
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-qm", "results"], origin)
    run(["git", "grep", "-F", keys["writer"][1], "HEAD"], origin, ok=False)  # the secret is in no commit
    assert ".dvc/config.local" not in run(["git", "ls-files"], origin)
    assert "pushed" in run(["dvc", "push"], origin, no_key)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    reader = _aws_env(keys["reader"], tmp_path)
    run(["dvc", "pull"], clone, reader)
    assert _digests(clone) == _digests(origin)
    assert "up to date" in run(["dvc", "status"], clone, reader)
    assert "in sync" in run(["dvc", "status", "--cloud"], clone, reader)
    assert stages_ran(run(["dvc", "repro"], clone, reader)) == []
    clip = next((clone / "data" / "raw").rglob("*.wav"))
    predicted = run([sys.executable, "-c", NO_TORCH, "predict", str(clip), "--json"], clone, stdout_only=True)
    assert json.loads(predicted)  # the deployed model ran under onnxruntime alone
    # the reader key may not write: a new file does not reach the remote
    (clone / "notes.txt").write_text("a file only a writer may share\n")
    run(["dvc", "add", "notes.txt"], clone, reader)
    assert "denied" in run(["dvc", "push"], clone, reader, ok=False).lower()

    # a user who wants only the deployable model pulls just its files
    model_only = tmp_path / "model-only"
    run(["git", "clone", "-q", str(origin), str(model_only)], tmp_path)
    targets = ["models/model.onnx", "models/model.onnx.json", "models/model-card.md"]
    run(["dvc", "pull", *targets], model_only, reader)
    assert not (model_only / "data").exists()
    models = model_only / "models"
    predicted = run(
        [sys.executable, "-c", NO_TORCH, "predict", str(clip), "--model", str(models / "model.onnx")], tmp_path
    )
    assert "model card" in (models / "model-card.md").read_text().lower()
    assert predicted.strip()

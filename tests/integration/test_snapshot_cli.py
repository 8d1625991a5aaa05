"""`openami snapshot upload|download`: the EBS direct client against an openami server,
checked with boto3 (DescribeSnapshots, ListSnapshotBlocks/GetSnapshotBlock,
ListChangedBlocks)."""

import os
import shutil
import subprocess

import boto3
import pytest
from botocore.config import Config

from conftest import FAST_WAITER, Server, openami_bin

BLOCK = 512 * 1024
MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


DIGEST_CACHE = {"dir": None}


@pytest.fixture(autouse=True)
def digest_cache(tmp_path):
    """Each test gets its own client digest cache (OPENAMI_CACHE_DIR)."""
    DIGEST_CACHE["dir"] = str(tmp_path / "client-cache")
    yield


def cli_env(creds, cache=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", OPENAMI_CACHE_DIR=str(cache or DIGEST_CACHE["dir"]))
    return env


def snapshot_cmd(srv, creds, *args, check=True, endpoint=None, cache=None):
    out = subprocess.run([openami_bin(), "snapshot", *args, "--endpoint", endpoint or srv.endpoint,
                          "--region", "us-east-1", "--no-progress"],
                         env=cli_env(creds, cache), capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def clients(srv, creds):
    kw = dict(endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
              aws_secret_access_key=creds["SecretAccessKey"], config=Config(retries={"max_attempts": 1}))
    return boto3.client("ebs", **kw), boto3.client("ec2", **kw)


def snapshot_blocks(ebs, sid):
    out, kw = {}, {"SnapshotId": sid, "MaxResults": 100}
    while True:
        page = ebs.list_snapshot_blocks(**kw)
        for b in page["Blocks"]:
            got = ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"])
            out[b["BlockIndex"]] = got["BlockData"].read()
        if not page.get("NextToken"):
            return out
        kw["NextToken"] = page["NextToken"]


def nonzero_blocks(data):
    out = {}
    for i in range(0, len(data), BLOCK):
        block = data[i:i + BLOCK].ljust(BLOCK, b"\0")
        if block.count(0) != BLOCK:
            out[i // BLOCK] = block
    return out


def check_download(srv, creds, sid, path, expected):
    snapshot_cmd(srv, creds, "download", sid, str(path))
    assert path.stat().st_size == GIB
    with open(path, "rb") as f:
        assert f.read(len(expected)) == expected
        while chunk := f.read(64 * MIB):
            assert chunk.count(0) == len(chunk)


def test_upload_download_incremental(own_server, tmp_path):
    srv = own_server
    creds = srv.create_account("cli-user")
    ebs, ec2 = clients(srv, creds)

    # 20 MiB plus a partial last block: random, zero and random regions.
    data = bytearray(os.urandom(20 * MIB + 1000))
    data[4 * MIB:12 * MIB] = bytes(8 * MIB)
    data[13 * MIB + 5:13 * MIB + 9] = bytes(4)
    image = tmp_path / "disk.raw"
    image.write_bytes(data)

    up = snapshot_cmd(srv, creds, "upload", str(image), "--description", "from the cli", "--workers", "4")
    sid = up.stdout.strip()
    assert sid.startswith("snap-"), up.stdout
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    snap = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert snap["State"] == "completed" and snap["VolumeSize"] == 1 and snap["Description"] == "from the cli"
    expected = nonzero_blocks(bytes(data))
    assert snapshot_blocks(ebs, sid) == expected
    check_download(srv, creds, sid, tmp_path / "down.raw", bytes(data) + bytes(BLOCK - 1000))

    # Incremental: rewrite 1 MiB (blocks 2-3), zero block 32 (at 16 MiB), keep the rest.
    child_data = bytearray(data)
    child_data[MIB:2 * MIB] = os.urandom(MIB)
    child_data[8 * BLOCK * 4:8 * BLOCK * 4 + BLOCK] = bytes(BLOCK)
    image2 = tmp_path / "disk2.raw"
    image2.write_bytes(child_data)
    up2 = snapshot_cmd(srv, creds, "upload", str(image2), "--parent", sid)
    child = up2.stdout.strip()
    assert "wrote 3 of 41 blocks" in up2.stderr, up2.stderr
    # The parent was uploaded from here: its digests came from the local cache.
    assert "parent digests from the local cache" in up2.stderr, up2.stderr
    # Without the cache the parent's blocks are read back, with the same outcome.
    up3 = snapshot_cmd(srv, creds, "upload", str(image2), "--parent", sid, cache=tmp_path / "empty-cache")
    assert "wrote 3 of 41 blocks" in up3.stderr and "parent blocks read" in up3.stderr, up3.stderr
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[child], WaiterConfig=FAST_WAITER)
    changed, kw = [], {"FirstSnapshotId": sid, "SecondSnapshotId": child}
    while True:
        page = ebs.list_changed_blocks(**kw)
        changed += [c["BlockIndex"] for c in page["ChangedBlocks"]]
        if not page.get("NextToken"):
            break
        kw["NextToken"] = page["NextToken"]
    assert changed == [2, 3, 32]
    assert snapshot_blocks(ebs, child) == nonzero_blocks(bytes(child_data))
    check_download(srv, creds, child, tmp_path / "down2.raw", bytes(child_data) + bytes(BLOCK - 1000))

    # A shorter file on the same parent: the parent's blocks past its end become zeros.
    short = tmp_path / "short.raw"
    short.write_bytes(bytes(child_data[:MIB]))
    up3 = snapshot_cmd(srv, creds, "upload", str(short), "--parent", child)
    truncated = up3.stdout.strip()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[truncated], WaiterConfig=FAST_WAITER)
    assert snapshot_blocks(ebs, truncated) == nonzero_blocks(bytes(child_data[:MIB]))

    # An empty file is an empty 1 GiB snapshot.
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    sid_empty = snapshot_cmd(srv, creds, "upload", str(empty)).stdout.strip()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid_empty], WaiterConfig=FAST_WAITER)
    assert snapshot_blocks(ebs, sid_empty) == {}


def test_errors(own_server, tmp_path):
    srv = own_server
    creds = srv.create_account("cli-errors")
    image = tmp_path / "small.raw"
    image.write_bytes(os.urandom(BLOCK))

    bad_creds = {"AccessKeyId": "AKIANOBODY0000000000", "SecretAccessKey": "x" * 40}
    out = snapshot_cmd(srv, bad_creds, "upload", str(image), check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert "UnrecognizedClientException" in out.stderr and "StartSnapshot" in out.stderr, out.stderr

    out = subprocess.run([openami_bin(), "snapshot", "upload", str(image), "--endpoint", "http://127.0.0.1:9",
                          "--region", "us-east-1", "--attempts", "2"],
                         env=cli_env(creds), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "cannot reach" in out.stderr, out.stderr

    out = snapshot_cmd(srv, creds, "download", "snap-00000000000000000", str(tmp_path / "x.raw"), check=False)
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr, out.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "missing"))
    out = subprocess.run([openami_bin(), "snapshot", "upload", str(image), "--endpoint", srv.endpoint,
                          "--region", "us-east-1"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no credentials" in out.stderr, out.stderr


def need_qemu_img():
    if shutil.which("qemu-img") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-img is required under CI=true (apt-get install qemu-utils)")
        pytest.skip("qemu-img not installed")


def qemu_img(*args):
    out = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"qemu-img {args}: {out.stdout}{out.stderr}"
    return out.stdout


def own_snapshots(ec2):
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_image_formats(own_server, tmp_path):
    """Upload qcow2 and vhdx images made by qemu-img (their virtual disks become the
    snapshot), download as qcow2/vmdk/vhd and compare with qemu-img; hostile images are
    refused before a snapshot is started."""
    need_qemu_img()
    srv = own_server
    creds = srv.create_account("cli-formats")
    ebs, ec2 = clients(srv, creds)

    # 20 MiB + 192 KiB: random, a zero run, a repeated block, a lone sector.
    data = bytearray(os.urandom(20 * MIB + 192 * 1024))
    data[4 * MIB:12 * MIB] = bytes(8 * MIB)
    data[13 * MIB:14 * MIB] = bytes(data[:BLOCK]) * 2
    data[15 * MIB:17 * MIB] = bytes(2 * MIB)
    data[16 * MIB + 4096:16 * MIB + 4608] = os.urandom(512)
    raw = tmp_path / "orig.raw"
    raw.write_bytes(data)
    expected = nonzero_blocks(bytes(data))

    sids = {}
    for fmt in ["qcow2", "vhdx"]:
        img = tmp_path / f"orig.{fmt}"
        qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(img))
        up = snapshot_cmd(srv, creds, "upload", str(img), "--workers", "4")
        sid = up.stdout.strip()
        assert sid.startswith("snap-") and f"({fmt} image)" in up.stderr, up.stderr
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
        assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["VolumeSize"] == 1
        assert snapshot_blocks(ebs, sid) == expected, fmt
        sids[fmt] = sid

    # --format raw uploads the container file's bytes as they are.
    qcow2 = tmp_path / "orig.qcow2"
    up = snapshot_cmd(srv, creds, "upload", str(qcow2), "--format", "raw")
    sid_raw = up.stdout.strip()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid_raw], WaiterConfig=FAST_WAITER)
    assert snapshot_blocks(ebs, sid_raw) == nonzero_blocks(qcow2.read_bytes())

    # Downloads in every writable format, by extension or --format.
    for name, fmt, extra in [("down.qcow2", "qcow2", []), ("down.vmdk", "vmdk", []),
                             ("down.vhd", "vpc", []), ("down-vmdk.img", "vmdk", ["--format", "vmdk"])]:
        out = tmp_path / name
        snapshot_cmd(srv, creds, "download", sids["qcow2"], str(out), *extra)
        if fmt != "vpc":
            assert "No errors" in qemu_img("check", "-f", fmt, str(out))
        info = qemu_img("info", "-f", fmt, str(out))
        assert "1 GiB" in info, info
        assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", fmt, str(raw), str(out))

    # Hostile: a qcow2 with a backing file is refused before any snapshot exists.
    before = own_snapshots(ec2)
    hostile = tmp_path / "hostile.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(hostile))
    out = snapshot_cmd(srv, creds, "upload", str(hostile), check=False)
    assert out.returncode != 0 and out.stdout == ""
    assert "backing file" in out.stderr and "refused" in out.stderr, out.stderr
    assert own_snapshots(ec2) == before

    # So is an unknown --format, and downloading as vhdx.
    out = snapshot_cmd(srv, creds, "upload", str(raw), "--format", "iso", check=False)
    assert out.returncode != 0 and "unknown format" in out.stderr, out.stderr
    out = snapshot_cmd(srv, creds, "download", sids["qcow2"], str(tmp_path / "x.vhdx"), check=False)
    assert out.returncode != 0 and "vhdx is not supported" in out.stderr, out.stderr
    assert own_snapshots(ec2) == before

"""EBS direct uploads across restarts of the service: an upload begun before openami is
killed (SIGKILL) or stopped (SIGTERM) carries on after it restarts on the same data
directory and port — same snapshot, still `pending`, blocks acknowledged before the
restart kept (GC does not collect them) — and completes bit-exact. An upload whose
Timeout passes while the service is down ends `error` and its blocks are collected."""

import json
import os
import signal
import sqlite3
import subprocess

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import FAST_WAITER, Server, error_code, openami_bin
from test_ebs import BLOCK, complete, ebs_client, put, read_all


def ec2_client(srv, creds):
    return boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def stop(srv, sig):
    srv.proc.send_signal(sig)
    code = srv.proc.wait(timeout=30)
    srv.log.close()
    if sig == signal.SIGTERM:
        assert code == 0, "openami did not exit cleanly on SIGTERM"


def store(srv, *args):
    out = subprocess.run([openami_bin(), "store", *args, "--data-dir", str(srv.data_dir), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def snapshot(ec2, sid):
    return ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]


@pytest.fixture
def servers(tmp_path):
    """Every server a test starts; any still running at the end is stopped."""
    started = []
    yield started
    for srv in started:
        if srv.proc.poll() is None:
            srv.stop()


def upload_across_restart(tmp_path, servers, sig):
    srv = Server(tmp_path / "data")
    servers.append(srv)
    creds = srv.create_account("resumer")
    ebs, ec2 = ebs_client(srv, creds), ec2_client(srv, creds)
    sid = ebs.start_snapshot(VolumeSize=1, Description="across a restart", Timeout=60)["SnapshotId"]
    blocks = {i: os.urandom(BLOCK) for i in (0, 3, 5, 1000)}
    blocks[7] = bytes(BLOCK)  # written as zeros: counts, but is not stored
    for i, data in blocks.items():
        assert put(ebs, sid, i, data)["ResponseMetadata"]["HTTPStatusCode"] == 201

    stop(srv, sig)
    # While openami is down, GC keeps the acknowledged blocks of the pending upload.
    gc = store(srv, "gc")
    assert sum(r["blocks_deleted"] for r in gc) == 0, gc
    assert sum(r["blocks_examined"] for r in gc) == 4, gc

    srv = Server(srv.data_dir, port=srv.port)
    servers.append(srv)
    # The same clients carry on against the restarted service.
    assert snapshot(ec2, sid)["State"] == "pending"
    more = {9: os.urandom(BLOCK), 3: os.urandom(BLOCK), 1: blocks[0]}  # 3 overwritten, 1 a duplicate
    for i, data in more.items():
        assert put(ebs, sid, i, data)["ResponseMetadata"]["HTTPStatusCode"] == 201
    blocks.update(more)
    # ChangedBlocksCount counts the blocks written before and after the restart.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(more))
    assert error_code(e.value) == "ValidationException"
    assert complete(ebs, sid, blocks)["Status"] == "completed"
    snap = snapshot(ec2, sid)
    assert snap["State"] == "completed" and snap["Progress"] == "100%"

    expected = {i: d for i, d in blocks.items() if d != bytes(BLOCK)}
    got = read_all(ebs, sid)
    assert sorted(got) == sorted(expected)
    for i in expected:
        assert got[i] == expected[i], f"block {i} differs"
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)

    stop(srv, signal.SIGTERM)
    scrub = store(srv, "scrub")
    assert scrub and all(r["clean"] for r in scrub), scrub
    # Only the overwritten block 3 is garbage now.
    gc = store(srv, "gc")
    assert sum(r["blocks_deleted"] for r in gc) == 1, gc


def test_upload_continues_after_sigkill(tmp_path, servers):
    upload_across_restart(tmp_path, servers, signal.SIGKILL)


def test_upload_continues_after_sigterm(tmp_path, servers):
    upload_across_restart(tmp_path, servers, signal.SIGTERM)


def test_upload_timing_out_across_a_restart_fails_and_is_collected(tmp_path, servers):
    srv = Server(tmp_path / "data")
    servers.append(srv)
    creds = srv.create_account("slowpoke")
    ebs, ec2 = ebs_client(srv, creds), ec2_client(srv, creds)
    sid = ebs.start_snapshot(VolumeSize=1, Timeout=10)["SnapshotId"]
    for i in range(3):
        put(ebs, sid, i, os.urandom(BLOCK))
    # A second upload, still within its timeout, must keep its blocks.
    keep = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
    kept = os.urandom(BLOCK)
    put(ebs, keep, 0, kept)
    stop(srv, signal.SIGKILL)

    # Eleven minutes pass while the service is down: move the first upload's clock back.
    db = sqlite3.connect(srv.data_dir / "catalog.db")
    with db:
        (doc,) = db.execute("SELECT doc FROM resources WHERE id = ?", (sid,)).fetchone()
        doc = json.loads(doc)
        doc["start_time_ms"] -= 11 * 60_000
        db.execute("UPDATE resources SET doc = ? WHERE id = ?", (json.dumps(doc), sid))
        n = db.execute("UPDATE upload_blocks SET written_ms = written_ms - ? WHERE snapshot_id = ?",
                       (11 * 60_000, sid)).rowcount
        assert n == 3
    db.close()

    srv = Server(srv.data_dir, port=srv.port)
    servers.append(srv)
    snap = snapshot(ec2, sid)
    assert snap["State"] == "error"
    assert "timed out" in snap["StateMessage"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        put(ebs, sid, 3, os.urandom(BLOCK))
    assert error_code(e.value) == "ValidationException"
    assert snapshot(ec2, keep)["State"] == "pending"
    stop(srv, signal.SIGTERM)

    gc = store(srv, "gc")
    assert sum(r["blocks_deleted"] for r in gc) == 3, gc
    stats = store(srv, "stats")
    assert sum(r["stored_blocks"] for r in stats) == 1, stats

    # The surviving upload still completes with its block.
    srv = Server(srv.data_dir, port=srv.port)
    servers.append(srv)
    complete(ebs, keep, {0: kept})
    assert read_all(ebs, keep) == {0: kept}

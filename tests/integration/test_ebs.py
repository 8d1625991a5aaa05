"""EBS direct APIs through boto3: upload a snapshot block by block, read it back, an
incremental upload on a parent, changed blocks, volumes from uploaded snapshots, and the
error paths (checksums, counts, tokens, other accounts)."""

import base64
import hashlib
import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import FAST_WAITER, Server, error_code, openami_bin

BLOCK = 512 * 1024


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def ebs_client(server, creds, region="us-east-1"):
    return boto3.client("ebs", endpoint_url=server.endpoint, region_name=region,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def put(ebs, sid, index, data):
    return ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=index, BlockData=data, DataLength=len(data),
                                  Checksum=b64sha(data), ChecksumAlgorithm="SHA256")


def complete(ebs, sid, blocks):
    """blocks: {index: data} written to this upload."""
    digests = b"".join(hashlib.sha256(blocks[i]).digest() for i in sorted(blocks))
    return ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(blocks),
                                 Checksum=base64.b64encode(hashlib.sha256(digests).digest()).decode(),
                                 ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR")


def read_all(ebs, sid):
    out = {}
    kw = {"SnapshotId": sid, "MaxResults": 100}
    while True:
        page = ebs.list_snapshot_blocks(**kw)
        assert page["BlockSize"] == BLOCK
        for b in page["Blocks"]:
            got = ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"])
            data = got["BlockData"].read()
            assert got["Checksum"] == b64sha(data) and got["ChecksumAlgorithm"] == "SHA256"
            assert got["DataLength"] == BLOCK
            out[b["BlockIndex"]] = data
        if not page.get("NextToken"):
            return out
        kw["NextToken"] = page["NextToken"]


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path / "data")
    yield srv
    srv.stop()


def test_upload_read_incremental_and_dedup(own_server):
    srv = own_server
    creds = srv.create_account("uploader")
    ebs = ebs_client(srv, creds)
    ec2 = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
    blocks = {i: os.urandom(BLOCK) for i in (0, 3, 5)}
    blocks[7] = bytes(BLOCK)  # an explicit zero block
    started = ebs.start_snapshot(VolumeSize=1, Description="uploaded", Tags=[{"Key": "k", "Value": "v"}], Timeout=60)
    sid = started["SnapshotId"]
    assert started["Status"] == "pending" and started["BlockSize"] == BLOCK and started["VolumeSize"] == 1
    for i, data in blocks.items():
        assert put(ebs, sid, i, data)["Checksum"] == b64sha(data)
    put(ebs, sid, 3, blocks[3])  # overwriting a block while pending is allowed
    assert complete(ebs, sid, blocks)["Status"] in ("pending", "completed")
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    snap = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert snap["VolumeSize"] == 1 and snap["Description"] == "uploaded" and snap["VolumeId"] == "vol-ffffffff"
    assert {"Key": "k", "Value": "v"} in snap["Tags"]
    assert read_all(ebs, sid) == {i: d for i, d in blocks.items() if i != 7}

    # Incremental: change block 3, zero block 0, keep 5.
    child_blocks = {3: os.urandom(BLOCK), 0: bytes(BLOCK)}
    child = ebs.start_snapshot(VolumeSize=2, ParentSnapshotId=sid)["SnapshotId"]
    for i, data in child_blocks.items():
        put(ebs, child, i, data)
    complete(ebs, child, child_blocks)
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[child], WaiterConfig=FAST_WAITER)
    assert read_all(ebs, child) == {3: child_blocks[3], 5: blocks[5]}
    changed = ebs.list_changed_blocks(FirstSnapshotId=sid, SecondSnapshotId=child)["ChangedBlocks"]
    assert [c["BlockIndex"] for c in changed] == [0, 3]
    assert "SecondBlockToken" not in changed[0] and "FirstBlockToken" in changed[0]
    second = ebs.get_snapshot_block(SnapshotId=child, BlockIndex=3, BlockToken=changed[1]["SecondBlockToken"])
    assert second["BlockData"].read() == child_blocks[3]

    # Blocks shared with the parent are stored once: 3 + 1 new.
    stats = subprocess.run([openami_bin(), "store", "stats", "--json", "--region", "us-east-1",
                            "--data-dir", str(srv.data_dir)], capture_output=True, text=True, check=True)
    assert json.loads(stats.stdout)["stored_blocks"] == 4

    # A volume from the uploaded snapshot, and another account cannot read it.
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=child)
    assert vol["Size"] == 2
    other = ebs_client(srv, srv.create_account("stranger"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.list_snapshot_blocks(SnapshotId=child)
    assert error_code(e.value) == "ResourceNotFoundException"


def test_store_stats_counts_blocks_of_uploads_in_progress_apart(own_server):
    # Blocks only a pending upload holds are kept by GC; `store stats` says so instead of
    # counting them as unreferenced (freed by gc).
    srv = own_server
    ebs = ebs_client(srv, srv.create_account("stats"))

    def stats():
        out = subprocess.run([openami_bin(), "store", "stats", "--json", "--region", "us-east-1",
                              "--data-dir", str(srv.data_dir)], capture_output=True, text=True, check=True)
        s = json.loads(out.stdout)
        return s["stored_blocks"], s["upload_blocks"], s["unreferenced_blocks"]

    sid = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    blocks = {i: os.urandom(BLOCK) for i in (0, 1)}
    for i, data in blocks.items():
        put(ebs, sid, i, data)
    assert stats() == (2, 2, 0)
    assert complete(ebs, sid, blocks)["Status"] == "completed"
    assert stats() == (2, 0, 0)


def test_upload_errors(own_server):
    srv = own_server
    creds = srv.create_account("careless")
    ebs = ebs_client(srv, creds)
    sid = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    data = os.urandom(BLOCK)

    def fails(call, code="ValidationException"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == code, e.value.response
        return e.value.response

    resp = fails(lambda: ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=0, BlockData=data, DataLength=BLOCK,
                                                Checksum=b64sha(b"other"), ChecksumAlgorithm="SHA256"))
    assert resp["Reason"] == "INVALID_BLOCK"
    fails(lambda: put(ebs, sid, 2048, data))  # beyond 1 GiB
    fails(lambda: put(ebs, sid, 0, data[:1000]))
    fails(lambda: ebs.start_snapshot(VolumeSize=70000))  # beyond 64 TiB
    fails(lambda: ebs.start_snapshot(VolumeSize=1, ParentSnapshotId="snap-00000000000000000"), "ResourceNotFoundException")
    put(ebs, sid, 1, data)
    # A false checksum is refused whether or not the store holds the block it names (a
    # stored block is compared, a new one hashed): other bytes under a stored block's
    # checksum, zeros under a non-zero checksum, a malformed or truncated checksum.
    for body, checksum in ((os.urandom(BLOCK), b64sha(data)), (bytes(BLOCK), b64sha(data)),
                           (data, "not base64!"), (data, b64sha(data)[:-4])):
        resp = fails(lambda: ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=2, BlockData=body, DataLength=BLOCK,
                                                    Checksum=checksum, ChecksumAlgorithm="SHA256"))
        assert resp["Reason"] == "INVALID_BLOCK", (checksum, resp)
    fails(lambda: ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=2))
    fails(lambda: ebs.list_snapshot_blocks(SnapshotId=sid))  # still pending
    complete(ebs, sid, {1: data})
    block = ebs.list_snapshot_blocks(SnapshotId=sid)["Blocks"][0]
    token = block["BlockToken"]
    tampered = token[:-6] + ("AAAA" if not token[-6:-2] == "AAAA" else "BBBB") + token[-2:]
    fails(lambda: ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=1, BlockToken=tampered))
    fails(lambda: ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=0, BlockToken=token))
    fails(lambda: put(ebs, sid, 0, data))  # completed: no more writes
    # Idempotent StartSnapshot with a client token.
    a = ebs.start_snapshot(VolumeSize=1, ClientToken="same-token")["SnapshotId"]
    b = ebs.start_snapshot(VolumeSize=1, ClientToken="same-token")["SnapshotId"]
    assert a == b
    bogus = ebs_client(srv, {"AccessKeyId": "AKIANOBODY0000000000", "SecretAccessKey": "x" * 40})
    fails(lambda: bogus.start_snapshot(VolumeSize=1), "UnrecognizedClientException")

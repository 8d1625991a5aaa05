"""A full disk (ENOSPC) under the data directory, on a small tmpfs: an EBS direct upload,
CreateSnapshot, ImportSnapshot and catalog writes (CreateTags, CreateVolume,
RegisterImage) fail with AWS-style errors — or, for the import task, end `error` with a
StatusMessage — that say the server is out of storage and name no host path. Nothing is
left half-written (no temp object, no volume directory, no snapshot but `completed` ones),
completed snapshots stay bit-exact, and once space is freed the same calls succeed: the
same upload takes its block again and completes, the same volume snapshots. After a
SIGTERM stop `openami store scrub` is clean and the server restarts on the directory.

Errors chosen (see crates/engine/src/error.rs):
* EBS direct (REST-JSON): `InternalServerException` (HTTP 500), the one server fault in
  the ebs model every operation declares; SDKs retry it (PutSnapshotBlock is idempotent).
* EC2 (query): `ServiceUnavailable` (503, retried by SDKs) when the catalog or the block
  store cannot write; `InsufficientVolumeCapacity` (503) when CreateVolume cannot create
  the volume's files.

Mounting the tmpfs needs root; CI runs the suite as root."""

import errno
import os
import signal
import subprocess
import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import FAST_WAITER, Server, openami_bin
from test_ebs import BLOCK, complete, ebs_client, put, read_all
from test_transfers import BUCKET, mixed_raw, snapshot_task, wait_task

MIB = 1024 * 1024
TMPFS_MIB = 96
OUT_OF_STORAGE = "out of storage"


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Filler:
    """Takes the free space of the filesystem of `mnt` away, and gives it back."""

    def __init__(self, mnt):
        self.path = mnt / "test-filler"

    def fill(self, leave=0):
        """Leaves about `leave` bytes free (0: not a single page)."""
        self.free()
        with open(self.path, "wb", buffering=0) as f:
            room = free_bytes(self.path.parent) - leave
            if room > 0:
                os.posix_fallocate(f.fileno(), 0, room)
            if leave == 0:
                f.seek(0, os.SEEK_END)
                try:
                    while f.write(b"\xff" * 4096):
                        pass
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
        assert free_bytes(self.path.parent) <= leave + 64 * 1024

    def free(self):
        self.path.unlink(missing_ok=True)


def mounted_tmpfs(tmp_path, options):
    """Mounts a tmpfs (`options`) as `tmp_path/data`: the data directory itself, so that
    server.log (written next to it) is not on it. Yields (mount, import dir, servers)."""
    if os.geteuid() != 0:
        pytest.fail("test_disk_full mounts a tmpfs and must run as root (CI does)")
    mnt = tmp_path / "data"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {mnt}: {out.stderr.strip()}")
    imports = tmp_path / "imports"
    (imports / BUCKET).mkdir(parents=True)
    servers = []
    try:
        yield mnt, imports, servers
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    yield from mounted_tmpfs(tmp_path, f"size={TMPFS_MIB}m")


@pytest.fixture
def few_inodes(tmp_path):
    yield from mounted_tmpfs(tmp_path, f"size={TMPFS_MIB}m,nr_inodes=4000")


def clients(srv, creds):
    ec2 = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       config=Config(retries={"max_attempts": 1}))
    return ec2, ebs_client(srv, creds)


def out_of_storage(call, codes, status, *paths):
    """`call` must fail with one of `codes` and HTTP `status`, saying the server is out of
    storage and naming none of `paths`."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    resp = e.value.response
    assert resp["Error"]["Code"] in codes, resp
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == status, resp
    assert OUT_OF_STORAGE in resp["Error"]["Message"], resp
    for p in paths:
        assert str(p) not in resp["Error"]["Message"], resp


def upload(ebs, ec2, blocks):
    sid = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
    for i, data in blocks.items():
        put(ebs, sid, i, data)
    complete(ebs, sid, blocks)
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    return sid


def nothing_half_written(ec2, data_dir, states=("completed", "pending")):
    """No temp object, no volume directory without a volume, no snapshot but in `states`."""
    objects = data_dir / "regions" / "us-east-1" / "objects"
    assert os.listdir(objects / ".tmp") == []
    volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert set(os.listdir(data_dir / "regions" / "us-east-1" / "volumes")) == volumes
    for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        assert s["State"] in states, s
    assert [p for p in data_dir.rglob("*.tmp") if p.is_file()] == []


def stop(srv):
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=30) == 0, "openami did not exit cleanly on SIGTERM"
    srv.log.close()


def test_disk_full_fails_cleanly_and_recovers(full_disk):
    mnt, imports, servers = full_disk
    hidden = (mnt, imports)
    srv = Server(mnt, ["--import-dir", str(imports)])
    servers.append(srv)
    creds = srv.create_account("filler")
    ec2, ebs = clients(srv, creds)
    filler = Filler(mnt)

    # Before: a completed upload, and a volume from it, that everything below must keep.
    before = {i: os.urandom(BLOCK) for i in (0, 2, 9)}
    before_sid = upload(ebs, ec2, before)
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=before_sid)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    raw = imports / BUCKET / "disk.raw"
    image = mixed_raw(raw, mib=12, seed=5)

    # Upload: a block that does not fit; the block acknowledged before stays.
    pending = ebs.start_snapshot(VolumeSize=1, Timeout=300)["SnapshotId"]
    acked = {1: os.urandom(BLOCK)}
    put(ebs, pending, 1, acked[1])
    late = os.urandom(BLOCK)
    filler.fill(leave=128 * 1024)
    out_of_storage(lambda: put(ebs, pending, 4, late), ("InternalServerException",), 500, *hidden)

    # Snapshot: refused while the catalog cannot grow (before the fix, the volume then
    # stayed "busy" with the refused snapshot: SnapshotCreationPerVolumeRateExceeded).
    filler.fill(leave=0)
    out_of_storage(lambda: ec2.create_snapshot(VolumeId=vol), ("ServiceUnavailable",), 503, *hidden)

    # Catalog writes.
    many = [{"Key": f"key-{i:04d}-" + "k" * 110, "Value": "v" * 250} for i in range(50)]
    out_of_storage(lambda: ec2.create_tags(Resources=[vol], Tags=many), ("ServiceUnavailable",), 503, *hidden)
    out_of_storage(lambda: ec2.create_volume(AvailabilityZone="us-east-1a", Size=1),
                   ("InsufficientVolumeCapacity", "ServiceUnavailable"), 503, *hidden)
    register = dict(Name="full-disk", RootDeviceName="/dev/xvda", Architecture="x86_64",
                    BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": before_sid}}],
                    TagSpecifications=[{"ResourceType": "image", "Tags": many}])
    out_of_storage(lambda: ec2.register_image(**register), ("ServiceUnavailable",), 503, *hidden)

    # None of those calls left anything behind.
    assert [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]] == [vol]
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0].get("Tags", []) == []
    assert ec2.describe_images(Owners=["self"])["Images"] == []

    # Completing the upload cannot store its manifest: refused, the upload stays pending.
    out_of_storage(lambda: complete(ebs, pending, acked), ("InternalServerException",), 500, *hidden)
    assert ec2.describe_snapshots(SnapshotIds=[pending])["Snapshots"][0]["State"] == "pending"

    # Import: room for the task's catalog row, not for the image; the task ends `error`.
    filler.fill(leave=MIB)
    task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "UserBucket": {"S3Bucket": BUCKET, "S3Key": "disk.raw"}})
    failed = wait_task(snapshot_task(ec2), "snapshot", task["ImportTaskId"], states=("error", "deleted"))
    msg = failed["SnapshotTaskDetail"].get("StatusMessage", "")
    assert OUT_OF_STORAGE in msg, failed
    for p in hidden:
        assert str(p) not in msg, msg
    assert "SnapshotId" not in failed["SnapshotTaskDetail"], failed

    nothing_half_written(ec2, mnt)
    assert read_all(ebs, before_sid) == before

    # Space again: the same calls succeed.
    filler.free()
    put(ebs, pending, 4, late)
    acked[4] = late
    complete(ebs, pending, acked)
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[pending], WaiterConfig=FAST_WAITER)
    assert read_all(ebs, pending) == acked
    again = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[again], WaiterConfig=FAST_WAITER)
    assert read_all(ebs, again) == before
    ec2.create_tags(Resources=[vol], Tags=many)
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    ec2.register_image(**register)
    task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "UserBucket": {"S3Bucket": BUCKET, "S3Key": "disk.raw"}})
    done = wait_task(snapshot_task(ec2), "snapshot", task["ImportTaskId"])
    got = read_all(ebs, done["SnapshotTaskDetail"]["SnapshotId"])
    for i in range(0, len(image), BLOCK):
        want = image[i:i + BLOCK].ljust(BLOCK, b"\0")
        assert got.get(i // BLOCK, bytes(BLOCK)) == want, f"imported block {i // BLOCK}"
    assert read_all(ebs, before_sid) == before
    nothing_half_written(ec2, mnt)

    # Stop, scrub, restart on the same directory.
    stop(srv)
    out = subprocess.run([openami_bin(), "store", "scrub", "--data-dir", str(mnt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    srv = Server(mnt, ["--import-dir", str(imports)])
    servers.append(srv)
    ec2, ebs = clients(srv, creds)
    assert read_all(ebs, before_sid) == before
    assert read_all(ebs, pending) == acked
    assert all(s["State"] == "completed" for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])
    stop(srv)


def test_snapshot_that_cannot_be_stored_ends_error(few_inodes):
    """No file can be created (the tmpfs is out of inodes: ENOSPC on create) while the
    catalog's files can still grow: CreateSnapshot is accepted, its manifest cannot be
    stored, and the snapshot ends `error` with a StateMessage, as in AWS. A SIGTERM then
    is a clean exit, and after a restart with files creatable again the volume snapshots."""
    mnt, imports, servers = few_inodes
    srv = Server(mnt)
    servers.append(srv)
    creds = srv.create_account("inodes")
    ec2, ebs = clients(srv, creds)
    before = {i: os.urandom(BLOCK) for i in (0, 5)}
    before_sid = upload(ebs, ec2, before)
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=before_sid)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)

    fillers = mnt / "test-inode-filler"
    fillers.mkdir()
    n = 0
    with pytest.raises(OSError) as e:
        while True:
            (fillers / str(n)).touch()
            n += 1
    assert e.value.errno == errno.ENOSPC and os.statvfs(mnt).f_favail == 0

    sid = ec2.create_snapshot(VolumeId=vol, Description="no room")["SnapshotId"]
    deadline = time.time() + 60
    while (snap := ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0])["State"] == "pending":
        assert time.time() < deadline, snap
        time.sleep(0.2)
    assert snap["State"] == "error", snap
    assert OUT_OF_STORAGE in snap["StateMessage"] and str(mnt) not in snap["StateMessage"], snap
    # No manifest was left for it: its blocks cannot be listed.
    with pytest.raises(botocore.exceptions.ClientError):
        ebs.list_snapshot_blocks(SnapshotId=sid)
    nothing_half_written(ec2, mnt, states=("completed", "error"))

    # A SIGTERM while still full (the volume's state file cannot be rewritten) is a clean
    # exit; the next start on the freed directory carries on.
    stop(srv)
    for f in fillers.iterdir():
        f.unlink()
    out = subprocess.run([openami_bin(), "store", "scrub", "--data-dir", str(mnt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    srv = Server(mnt)
    servers.append(srv)
    ec2, ebs = clients(srv, creds)
    assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"] == "error"
    again = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[again], WaiterConfig=FAST_WAITER)
    assert read_all(ebs, again) == before
    assert read_all(ebs, before_sid) == before
    stop(srv)

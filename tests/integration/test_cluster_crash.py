"""kill -9 of a node of the cluster in the middle of its work (issue 13): a CreateSnapshot, an
EBS direct upload and a CreateImage, each caught `pending` — one at a time, then all three at
once — and the node started again (`scripts/cluster node DIR 1 start`: same port, same data
directory).

The cluster is the one `scripts/cluster up` starts (see test_cluster.py): PostgreSQL, SeaweedFS
and two nodes, node-1 owning us-east-1a. Everything here happens in us-east-1a, so node-1 does
the work and node-1 is the node killed; node-2 stays up, answers from the catalog meanwhile
(the work is still `pending`: node-2 leaves it alone) and hands CreateImage to node-1.

The data is known independently of openami: a guest in us-east-1a writes 128 MiB of random
data to each of four data volumes, drops its page cache and prints each volume's MD5 as it
reads it back; uploads are random bytes made here. After each restart:

* the interrupted snapshot is `completed` with exactly the guest's data, or `error` — and then
  a new snapshot of the same volume has exactly the guest's data (the blocks the lost snapshot
  had frozen still count as changed), and the failed one can be deleted;
* the interrupted upload is still `pending` and the same client carries on (the block that was
  in flight is put again) and completes it with exactly the data put, or it is `error` with a
  reason;
* the interrupted image is `available` with its snapshots holding the guest's data, or
  `failed` with none of its snapshots left `pending` — and then a new CreateImage is
  `available` with all of the data, and the failed image and its snapshots can be deleted;
* snapshots completed before any crash (the guest's root uploaded with `openami snapshot
  upload`, a small EBS direct upload) read back byte-identical;

and at the end no snapshot or image is `pending` and `openami store scrub` of the cluster's
bucket is clean in every region. Each scenario asserts that it caught its work in flight at
the kill (a snapshot at least 10-25% done, an image with snapshots still pending, an upload
with a put that failed under the kill); a scenario that misses its window fails, it does not
pass vacuously."""

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import error_code, openami_bin
from test_cluster import Cluster
from test_ebs import BLOCK, complete, put, read_all
from test_instances import guest_raw, needs_qemu, wait_until  # noqa: F401 (fixture)

REGIONS = ("us-east-1", "us-west-2")
ZONE = "us-east-1a"  # node-1's
DATA_MIB = 128  # per data volume: storing it in SeaweedFS takes ~2 s, the window for a kill
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("crash"))
    yield c
    c.down()


@pytest.fixture(autouse=True)
def logs_on_failure(request, cluster):
    """A failed test shows the tail of both nodes' logs (in its captured teardown output)."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        for k in (1, 2):
            print(f"--- node-{k} log (last lines) ---\n{log_tail(cluster, k, 60)}")


def ebs_client(cluster, k):
    return boto3.client(
        "ebs", region_name="us-east-1", endpoint_url=cluster.endpoint(k),
        aws_access_key_id=cluster.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cluster.env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def log_tail(cluster, k, lines=40):
    text = (cluster.dir / f"node-{k}.log").read_text(errors="replace")
    return "\n".join(ANSI.sub("", line) for line in text.splitlines()[-lines:])


def crash(cluster, k):
    """SIGKILL node k at once (no script in between), then let scripts/cluster see it gone."""
    os.kill(cluster.pid(k), signal.SIGKILL)
    cluster.node(k, "kill")


def restart(cluster, k):
    """Starts node k again; returns how long it took to answer /health (recovery included)."""
    started = time.monotonic()
    cluster.node(k, "start")
    return time.monotonic() - started


def until(check, seconds, what, cluster, interval=0.3):
    """Polls `check` until it returns something true; fails with node-1's log tail."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        try:
            last = check()
            if last:
                return last
        except ClientError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {seconds} s (last: {last!r}); "
                                 f"node-1 log:\n{log_tail(cluster, 1)}")
        time.sleep(interval)


def percent(progress):
    return int(progress.rstrip("%") or 0)


def snapshot(ec2, sid):
    return ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]


def md5_of_snapshot(ebs, sid, mib=DATA_MIB):
    """MD5 of the snapshot's first `mib` MiB, read with GetSnapshotBlock (read_all checks each
    block's checksum); nothing may be stored past them (the guest wrote nothing there)."""
    blocks = read_all(ebs, sid)
    count = mib * (1 << 20) // BLOCK
    beyond = sorted(i for i in blocks if i >= count)
    assert not beyond, f"{sid} has blocks past {mib} MiB: {beyond[:5]}"
    digest = hashlib.md5()
    for i in range(count):
        digest.update(blocks.get(i, bytes(BLOCK)))
    return digest.hexdigest()


def same_as_uploaded(ebs, sid, expected):
    got = read_all(ebs, sid)
    assert sorted(got) == sorted(expected), f"{sid}: blocks {sorted(got)} != {sorted(expected)}"
    for i, data in expected.items():
        assert got[i] == data, f"{sid}: block {i} differs"


def upload_blocks(ebs, blocks, description):
    sid = ebs.start_snapshot(VolumeSize=1, Description=description, Timeout=60)["SnapshotId"]
    for i, data in blocks.items():
        put(ebs, sid, i, data)
    assert complete(ebs, sid, blocks)["Status"] == "completed"
    return sid


@pytest.fixture(scope="module")
def earlier(cluster, guest_raw):  # noqa: F811
    """Snapshots completed before any crash: (root snapshot of the guest, an EBS direct
    upload's id, its blocks)."""
    out = subprocess.run([openami_bin(), "snapshot", "upload", str(guest_raw), "--endpoint",
                          cluster.endpoint(1), "--region", "us-east-1", "--no-progress"],
                         env=cluster.cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    root = out.stdout.strip()
    blocks = {i: os.urandom(BLOCK) for i in (0, 1, 2, 7, 100, 2047)}
    uploaded = upload_blocks(ebs_client(cluster, 1), blocks, "before the crashes")
    c1 = cluster.client(1)
    for sid in (root, uploaded):
        assert snapshot(c1, sid)["State"] == "completed"
    return root, uploaded, blocks


def check_earlier_intact(cluster, earlier, guest=None):
    """The snapshots completed before the crashes read back byte-identical (the guest's root
    only when `guest`, the raw file, is given: 64 MiB to read)."""
    root, uploaded, blocks = earlier
    ebs = ebs_client(cluster, 1)
    c1 = cluster.client(1)
    for sid in (root, uploaded):
        assert snapshot(c1, sid)["State"] == "completed", sid
    same_as_uploaded(ebs, uploaded, blocks)
    if guest is not None:
        raw = guest.read_bytes()
        expected = {i // BLOCK: raw[i:i + BLOCK] for i in range(0, len(raw), BLOCK)}
        same_as_uploaded(ebs, root, {i: d for i, d in expected.items() if any(d)})


DATA_DEVICES = {"/dev/sdf": "vdb", "/dev/sdg": "vdc", "/dev/sdh": "vdd", "/dev/sdi": "vde"}


@pytest.fixture(scope="module")
def writer(cluster, earlier):
    """A stopped instance in us-east-1a whose four data volumes (/dev/sdf… , the guest's vdb…)
    hold DATA_MIB MiB of random data each: (instance, {device: volume}, {device: MD5 the guest
    read back}). Each scenario takes fresh volumes: a volume's second snapshot finds its blocks
    in the bucket already and is over too soon to be caught."""
    c1 = cluster.client(1)
    root, _, _ = earlier
    image = c1.register_image(
        Name="crash-guest-" + uuid.uuid4().hex[:8], Architecture="x86_64",
        RootDeviceName="/dev/xvda", VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": root, "DeleteOnTermination": True}}])["ImageId"]
    # The page cache is dropped before the read-back, so the sums are of what the volumes hold;
    # the sums run at once on the two vCPUs (MD5 of 128 MiB takes ~10 s under TCG).
    disks = " ".join(DATA_DEVICES.values())
    user_data = (
        "#!/bin/sh\n"
        f"for d in {disks}; do\n"
        f"  dd if=/dev/urandom of=/dev/$d bs=1M count={DATA_MIB} 2>/dev/null\n"
        "done\n"
        "sync; echo 3 > /proc/sys/vm/drop_caches\n"
        f"for d in {disks}; do\n"
        f"  (echo \"sum $d $(dd if=/dev/$d bs=1M count={DATA_MIB} 2>/dev/null | md5sum)\") &\n"
        "done\n"
        "wait\n")
    iid = c1.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        Placement={"AvailabilityZone": ZONE}, UserData=user_data,
        BlockDeviceMappings=[
            {"DeviceName": dev, "Ebs": {"VolumeSize": 1, "DeleteOnTermination": True}}
            for dev in DATA_DEVICES])["Instances"][0]["InstanceId"]
    inst = wait_until(c1, iid, "stopped", timeout=300)
    console = c1.get_console_output(InstanceId=iid).get("Output", "")
    sums = dict(re.findall(r"sum (vd[b-e]) ([0-9a-f]{32})", console))
    assert set(sums) == set(DATA_DEVICES.values()), console[-2000:]
    assert len(set(sums.values())) == len(sums)
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}
    return iid, volumes, {dev: sums[disk] for dev, disk in DATA_DEVICES.items()}


def not_pending(describe):
    """A check for `until`: the description once it is no longer `pending`."""
    def check():
        d = describe()
        return d if d["State"] != "pending" else None
    return check


def delete_snapshots(ec2, ids):
    for sid in ids:
        ec2.delete_snapshot(SnapshotId=sid)
    for sid in ids:
        with pytest.raises(ClientError) as e:
            snapshot(ec2, sid)
        assert error_code(e.value) == "InvalidSnapshot.NotFound", sid


# --- CreateSnapshot ------------------------------------------------------------------------------

def snapshot_midway(c1, sid, at_least):
    """A check for `until`: the snapshot once it is `pending` and `at_least` percent done."""
    def check():
        s = snapshot(c1, sid)
        assert s["State"] == "pending", f"{sid} was {s['State']} before it was caught midway"
        return s if percent(s["Progress"]) >= at_least else None
    return check


def snapshot_after_restart(cluster, sid, volume, md5):
    """The interrupted snapshot is completed with exactly the guest's data, or `error`, and then
    a new snapshot of the volume is (the frozen blocks still counted as changed); the errored
    one can be deleted. Returns its state."""
    c1, ebs = cluster.client(1), ebs_client(cluster, 1)
    after = until(not_pending(lambda: snapshot(c1, sid)), 60, f"{sid} leaving pending", cluster)
    if after["State"] == "completed":
        assert md5_of_snapshot(ebs, sid) == md5, f"{sid} completed with the wrong data"
        return after
    assert after["State"] == "error", after
    assert after.get("StateMessage"), "an error without a reason"
    again = c1.create_snapshot(VolumeId=volume, Description="after the crash")["SnapshotId"]
    done = until(not_pending(lambda: snapshot(c1, again)), 120, f"{again} completing", cluster)
    assert done["State"] == "completed", done
    assert md5_of_snapshot(ebs, again) == md5, f"{again}, taken after the crash, lost data"
    delete_snapshots(c1, [sid])
    return after


# --- EBS direct upload ---------------------------------------------------------------------------

class Upload(threading.Thread):
    """Puts blocks 0, 1, 2… of a new upload through node-1 (random data, block 5 zeros: counted,
    not stored) one after another until a put fails (the node died under it) or the 1 GiB volume
    is full: `acked` holds the acknowledged blocks, `failed` the one in flight then."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.ebs = ebs_client(cluster, 1)
        self.sid = self.ebs.start_snapshot(VolumeSize=1, Description="killed mid-upload",
                                           Timeout=60)["SnapshotId"]
        self.acked, self.failed = {}, None

    def run(self):
        for i in range(2048):
            data = bytes(BLOCK) if i == 5 else os.urandom(BLOCK)
            try:
                put(self.ebs, self.sid, i, data)
            except Exception as e:  # node-1 died under it
                self.failed = (i, data, e)
                return
            self.acked[i] = data

    def stopped_by_the_kill(self):
        self.join(timeout=90)
        assert not self.is_alive(), "a PutSnapshotBlock hung on the killed node"
        assert self.failed, f"the upload put all of its {len(self.acked)} blocks before the kill"

    def put_through(self, ebs, more):
        """Puts the block that was in flight and `more` new ones through another client."""
        i, data, _ = self.failed
        put(ebs, self.sid, i, data)
        self.acked[i] = data
        for n in range(i + 1, i + 1 + more):
            self.acked[n] = os.urandom(BLOCK)
            put(ebs, self.sid, n, self.acked[n])

    def describe(self):
        i, _, e = self.failed
        return f"{len(self.acked)} blocks acknowledged, block {i} in flight ({type(e).__name__})"

    def after_restart(self, cluster):
        """Still `pending`: the same client puts the block that was in flight again and
        completes the upload, which then holds exactly the data put. Or `error`, with a reason.
        Returns the state seen after the restart."""
        c1 = cluster.client(1)
        state = snapshot(c1, self.sid)
        if state["State"] == "error":
            assert state.get("StateMessage"), "an error without a reason"
            return state
        assert state["State"] == "pending", state
        i, data, _ = self.failed
        put(self.ebs, self.sid, i, data)
        blocks = {**self.acked, i: data}
        assert complete(self.ebs, self.sid, blocks)["Status"] == "completed"
        done = until(not_pending(lambda: snapshot(c1, self.sid)), 60, f"{self.sid} completing",
                     cluster)
        assert done["State"] == "completed" and done["Progress"] == "100%", done
        same_as_uploaded(self.ebs, self.sid, {k: d for k, d in blocks.items() if any(d)})
        return state


# --- CreateImage ---------------------------------------------------------------------------------

def image_snapshots(image):
    return {m["DeviceName"]: m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]
            if "Ebs" in m and m["Ebs"].get("SnapshotId")}


def describe_image(ec2, ami):
    return ec2.describe_images(ImageIds=[ami])["Images"][0]


def begin_image(c2, iid, devices):
    """CreateImage of the stopped writer with only `devices` of its data volumes (the others
    NoDevice), asked through node-2: handed to node-1, which owns the instance's zone."""
    skip = [{"DeviceName": dev, "NoDevice": ""} for dev in DATA_DEVICES if dev not in devices]
    ami = c2.create_image(InstanceId=iid, Name="crash-" + uuid.uuid4().hex[:8],
                          BlockDeviceMappings=skip)["ImageId"]
    snaps = image_snapshots(describe_image(c2, ami))
    assert sorted(snaps) == sorted(["/dev/xvda", *devices]), snaps
    return ami, snaps


def image_states(c2, ami, snaps):
    """The image's state and its snapshots' states."""
    states = sorted(snapshot(c2, s)["State"] for s in snaps.values())
    return describe_image(c2, ami)["State"], states


def check_image_data(cluster, image, sums):
    """An available image of the writer: every snapshot completed, the data volumes' holding
    exactly the data the guest wrote."""
    c1, ebs = cluster.client(1), ebs_client(cluster, 1)
    snaps = image_snapshots(image)
    for sid in snaps.values():
        assert snapshot(c1, sid)["State"] == "completed", sid
    read_all(ebs, snaps["/dev/xvda"])  # every block's checksum is checked
    for dev in snaps:
        if dev != "/dev/xvda":
            assert md5_of_snapshot(ebs, snaps[dev]) == sums[dev], f"{dev} of {image['ImageId']}"


def image_after_restart(cluster, ami, snaps, iid, sums):
    """The interrupted image is `available` with the guest's data, or `failed` with none of its
    snapshots left pending — and then a new CreateImage of the same volumes is available with all
    of their data, and the failed image and its snapshots can be deleted. Returns the states seen
    after the restart."""
    c2 = cluster.client(2)
    after = until(not_pending(lambda: describe_image(c2, ami)), 60, f"{ami} leaving pending",
                  cluster)
    settled = {sid: snapshot(c2, sid)["State"] for sid in snaps.values()}
    for sid, state in settled.items():
        assert state in ("completed", "error"), f"{sid} of {ami} left {state}"
    if after["State"] == "available":
        check_image_data(cluster, after, sums)
    else:
        assert after["State"] == "failed", after
        assert after.get("StateReason", {}).get("Message"), "failed without a reason"
        assert "error" in settled.values(), settled
        again, _ = begin_image(c2, iid, [dev for dev in snaps if dev != "/dev/xvda"])
        done = until(not_pending(lambda: describe_image(c2, again)), 120, f"{again} completing",
                     cluster)
        assert done["State"] == "available", done
        check_image_data(cluster, done, sums)
        c2.deregister_image(ImageId=ami)
        delete_snapshots(c2, list(snaps.values()))
    return after["State"], sorted(settled.values()), after.get("StateReason", {}).get("Message")


# --- the scenarios -------------------------------------------------------------------------------

@needs_qemu
def test_kill_during_create_snapshot(cluster, earlier, writer):
    """Killed in the middle of the snapshot: some of its blocks are in the bucket, its manifest
    is not."""
    c1, c2 = cluster.client(1, retries=1), cluster.client(2)
    _, volumes, sums = writer
    sid = c1.create_snapshot(VolumeId=volumes["/dev/sdf"])["SnapshotId"]
    at_kill = until(snapshot_midway(c1, sid, 25), 60, f"{sid} 25% done", cluster, interval=0.05)
    crash(cluster, 1)
    assert percent(at_kill["Progress"]) < 100, at_kill
    # While node-1 is down node-2 answers from the catalog, and leaves node-1's work alone.
    assert snapshot(c2, sid)["State"] == "pending"
    took = restart(cluster, 1)
    after = snapshot_after_restart(cluster, sid, volumes["/dev/sdf"], sums["/dev/sdf"])
    print(f"\nsnapshot {sid}: pending {at_kill['Progress']} at the kill; {after['State']} after "
          f"a restart of {took:.1f} s ({after.get('StateMessage', '')})")
    check_earlier_intact(cluster, earlier)


def test_kill_during_ebs_direct_upload(cluster, earlier):
    """Killed after a dozen PutSnapshotBlock were acknowledged, with one more in flight; the
    upload goes on through node-2 while node-1 is down, and through node-1 once it is back."""
    upload = Upload(cluster)
    upload.start()
    until(lambda: len(upload.acked) >= 12, 60, "a dozen blocks acknowledged", cluster,
          interval=0.01)
    crash(cluster, 1)
    upload.stopped_by_the_kill()
    upload_at_kill = upload.describe()
    assert snapshot(cluster.client(2), upload.sid)["State"] == "pending"
    # Uploads are regional: while node-1 is down the same upload goes on through node-2.
    upload.put_through(ebs_client(cluster, 2), 4)
    took = restart(cluster, 1)
    after = upload.after_restart(cluster)
    print(f"\nupload {upload.sid}: {upload_at_kill} at the kill; {after['State']} after a "
          f"restart of {took:.1f} s")
    check_earlier_intact(cluster, earlier)


@needs_qemu
def test_kill_during_create_image(cluster, earlier, writer):
    """Node-1 stores an image's snapshots one after another (root, sdf, sdg here): killed once
    some of them are completed and some pending."""
    iid, _, sums = writer
    c2 = cluster.client(2)
    ami, snaps = begin_image(c2, iid, ["/dev/sdg"])

    def midway():
        image, states = image_states(c2, ami, snaps)
        assert image == "pending", f"{ami} was {image} before it was caught midway"
        return states if {"completed", "pending"} <= set(states) else None
    at_kill = until(midway, 60, f"{ami} with snapshots both completed and pending", cluster,
                    interval=0.05)
    crash(cluster, 1)
    assert image_states(c2, ami, snaps)[0] == "pending"
    took = restart(cluster, 1)
    after = image_after_restart(cluster, ami, snaps, iid, sums)
    print(f"\nimage {ami}: pending, snapshots {at_kill} at the kill; {after} after a restart "
          f"of {took:.1f} s")
    check_earlier_intact(cluster, earlier)


@needs_qemu
def test_kill_during_all_three_at_once(cluster, earlier, writer):
    """The issue's wording: one kill -9 while a snapshot (sdh), an upload and a CreateImage (root,
    sdi) are all in flight on node-1."""
    iid, volumes, sums = writer
    c1, c2 = cluster.client(1, retries=1), cluster.client(2)
    upload = Upload(cluster)
    upload.start()
    # The image first: its hand-over through node-2 takes longer than a direct call.
    ami, snaps = begin_image(c2, iid, ["/dev/sdi"])
    sid = c1.create_snapshot(VolumeId=volumes["/dev/sdh"])["SnapshotId"]

    def all_in_flight():
        s = snapshot_midway(c1, sid, 10)()
        image, states = image_states(c2, ami, snaps)
        assert image == "pending" and "pending" in states, f"{ami}: {image}, {states}"
        assert upload.is_alive(), f"the upload ended before the kill: {upload.failed}"
        return (s, states) if s and len(upload.acked) >= 8 else None
    at_kill, image_at_kill = until(all_in_flight, 60, "all three in flight", cluster,
                                   interval=0.05)
    crash(cluster, 1)
    upload.stopped_by_the_kill()
    upload_at_kill = upload.describe()
    took = restart(cluster, 1)
    snap_after = snapshot_after_restart(cluster, sid, volumes["/dev/sdh"], sums["/dev/sdh"])
    upload_after = upload.after_restart(cluster)
    image_after = image_after_restart(cluster, ami, snaps, iid, sums)
    print(f"\nall at once, restart of {took:.1f} s: snapshot {sid} pending {at_kill['Progress']}"
          f" -> {snap_after['State']}; upload {upload.sid} {upload_at_kill} -> "
          f"{upload_after['State']}; image {ami} pending, snapshots {image_at_kill} -> "
          f"{image_after}")
    check_earlier_intact(cluster, earlier)


def test_after_the_crashes_nothing_is_pending_and_scrub_is_clean(
        cluster, earlier, guest_raw):  # noqa: F811
    c1 = cluster.client(1)
    pending = [s["SnapshotId"] for s in c1.describe_snapshots(OwnerIds=["self"])["Snapshots"]
               if s["State"] == "pending"]
    assert not pending, f"snapshots left pending: {pending}"
    images = [i["ImageId"] for i in c1.describe_images(Owners=["self"])["Images"]
              if i["State"] == "pending"]
    assert not images, f"images left pending: {images}"
    check_earlier_intact(cluster, earlier, guest=guest_raw)

    s3 = dict(line.split("=", 1) for line in (cluster.dir / "s3" / "env").read_text().splitlines()
              if "=" in line)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENAMI_"))}
    env.update(OPENAMI_S3_ACCESS_KEY_ID=s3["AWS_ACCESS_KEY_ID"],
               OPENAMI_S3_SECRET_ACCESS_KEY=s3["AWS_SECRET_ACCESS_KEY"])
    scratch = cluster.dir / "scrub"
    scratch.mkdir(exist_ok=True)
    for region in REGIONS:
        out = subprocess.run(
            [openami_bin(), "store", "scrub", "--data-dir", str(scratch),
             "--blocks", "s3://openami/cluster",
             "--s3-endpoint", cluster.env["OPENAMI_S3_ENDPOINT"],
             "--region", region, "--json"],
            env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"scrub of {region}:\n{out.stdout}\n{out.stderr}"
        report = json.loads(out.stdout)
        print(f"\nscrub {region}: {report}")
        assert report["clean"] and not report["missing_blocks"], report
    for k in (1, 2):
        log = (cluster.dir / f"node-{k}.log").read_text(errors="replace")
        assert "panicked" not in log, f"node-{k} panicked:\n{log_tail(cluster, k, 80)}"

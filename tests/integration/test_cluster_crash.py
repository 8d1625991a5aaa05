"""kill -9 of a node of the cluster in the middle of its work (issue 13): a CreateSnapshot, an
EBS direct upload and a CreateImage, each caught `pending`, then the node started again
(`scripts/cluster node DIR 1 start`, same port, same data directory).

The cluster is the one `scripts/cluster up` starts (see test_cluster.py): PostgreSQL, SeaweedFS
and two nodes, node-1 owning us-east-1a. Everything here happens in us-east-1a, so node-1 does
the work and node-1 is the node killed; node-2 stays up and answers from the catalog meanwhile.

The data is known independently of openami: a guest in us-east-1a writes 128 MiB of random
data to each of two data volumes, drops its page cache and prints each volume's MD5 as it
reads it back; uploads are random bytes made here. After each restart:

* the interrupted snapshot is `completed` with exactly the guest's data, or `error` — and then
  a new snapshot of the same volume has exactly the guest's data (the blocks the lost snapshot
  had frozen still count as changed);
* the interrupted upload is still `pending` and the same client carries on (the blocks that
  had not been acknowledged are put again) and completes it with exactly the data put, or it
  is `error` with a reason;
* the interrupted image is `available` with its snapshots holding the guest's data, or
  `failed` with none of its snapshots left `pending` — and then a new CreateImage is
  `available` with all of the data; what failed can be deleted (DeregisterImage,
  DeleteSnapshot);
* snapshots completed before any crash (the guest's root uploaded with `openami snapshot
  upload`, a small EBS direct upload) read back byte-identical;

and at the end `openami store scrub` of the cluster's bucket is clean in every region.
Each scenario asserts that it did catch its work `pending` at the kill.
"""

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


def settled_snapshot(cluster, ec2, sid, seconds=60):
    """The snapshot once it is no longer `pending`."""
    return until(lambda: (lambda s: s if s["State"] != "pending" else None)(snapshot(ec2, sid)),
                 seconds, f"{sid} leaving pending", cluster)


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


@pytest.fixture(scope="module")
def writer(cluster, earlier):
    """A stopped instance in us-east-1a whose data volumes /dev/sdf and /dev/sdg (the guest's
    vdb and vdc) hold DATA_MIB MiB of random data each: (instance, {device: volume},
    {device: MD5 the guest read back})."""
    c1 = cluster.client(1)
    root, _, _ = earlier
    image = c1.register_image(
        Name="crash-guest-" + uuid.uuid4().hex[:8], Architecture="x86_64",
        RootDeviceName="/dev/xvda", VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": root, "DeleteOnTermination": True}}])["ImageId"]
    # The page cache is dropped before the read-back, so the sums are of what the volumes hold;
    # the two sums run at once (two vCPUs): MD5 of 128 MiB takes ~10 s under TCG.
    user_data = (
        "#!/bin/sh\n"
        "for d in vdb vdc; do\n"
        f"  dd if=/dev/urandom of=/dev/$d bs=1M count={DATA_MIB} 2>/dev/null\n"
        "done\n"
        "sync; echo 3 > /proc/sys/vm/drop_caches\n"
        "for d in vdb vdc; do\n"
        f"  (echo \"sum $d $(dd if=/dev/$d bs=1M count={DATA_MIB} 2>/dev/null | md5sum)\") &\n"
        "done\n"
        "wait\n")
    iid = c1.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        Placement={"AvailabilityZone": ZONE}, UserData=user_data,
        BlockDeviceMappings=[
            {"DeviceName": dev, "Ebs": {"VolumeSize": 1, "DeleteOnTermination": True}}
            for dev in ("/dev/sdf", "/dev/sdg")])["Instances"][0]["InstanceId"]
    inst = wait_until(c1, iid, "stopped", timeout=300)
    console = c1.get_console_output(InstanceId=iid).get("Output", "")
    sums = dict(re.findall(r"sum (vd[bc]) ([0-9a-f]{32})", console))
    assert set(sums) == {"vdb", "vdc"}, console[-2000:]
    assert sums["vdb"] != sums["vdc"]
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}
    return iid, volumes, {"/dev/sdf": sums["vdb"], "/dev/sdg": sums["vdc"]}


@needs_qemu
def test_kill_during_create_snapshot(cluster, earlier, writer):
    c1, c2 = cluster.client(1, retries=1), cluster.client(2)
    _, volumes, sums = writer
    vol = volumes["/dev/sdf"]
    sid = c1.create_snapshot(VolumeId=vol, Description="killed while pending")["SnapshotId"]

    def midway():
        s = snapshot(c1, sid)
        assert s["State"] == "pending", f"{sid} was {s['State']} before 25% could be seen"
        return s if percent(s["Progress"]) >= 25 else None
    # Killed in the middle: some of its blocks are in the bucket, its manifest is not.
    at_kill = until(midway, 60, f"{sid} 25% done", cluster, interval=0.05)
    crash(cluster, 1)
    assert percent(at_kill["Progress"]) < 100, at_kill
    # While node-1 is down node-2 answers from the catalog: still pending, not failed by node-2.
    assert snapshot(c2, sid)["State"] == "pending"
    took = restart(cluster, 1)
    after = settled_snapshot(cluster, c1, sid)
    print(f"\nsnapshot {sid}: {at_kill['State']} {at_kill['Progress']} at the kill, "
          f"{after['State']} after a restart of {took:.1f} s ({after.get('StateMessage', '')})")
    ebs = ebs_client(cluster, 1)
    if after["State"] == "completed":
        assert md5_of_snapshot(ebs, sid) == sums["/dev/sdf"], "completed with the wrong data"
    else:
        assert after["State"] == "error", after
        assert after.get("StateMessage"), "an error without a reason"
        # Nothing of the volume's data is lost for the next snapshot.
        again = c1.create_snapshot(VolumeId=vol, Description="after the crash")["SnapshotId"]
        done = settled_snapshot(cluster, c1, again)
        assert done["State"] == "completed", done
        assert md5_of_snapshot(ebs, again) == sums["/dev/sdf"], "the next snapshot lost data"
        delete_snapshots(c1, [sid])
    check_earlier_intact(cluster, earlier)


def test_kill_during_ebs_direct_upload(cluster, earlier):
    """PutSnapshotBlock after PutSnapshotBlock through node-1, which is killed after a dozen
    were acknowledged: the put in flight fails; after the restart the client puts what was not
    acknowledged and completes the upload."""
    ebs = ebs_client(cluster, 1)
    c2 = cluster.client(2)
    blocks = {i: os.urandom(BLOCK) for i in range(64)}
    blocks[40] = bytes(BLOCK)  # a zero block: counted, not stored
    sid = ebs.start_snapshot(VolumeSize=1, Description="killed mid-upload",
                             Timeout=60)["SnapshotId"]
    acked, failure = [], []

    def uploader():
        for i, data in blocks.items():
            try:
                put(ebs, sid, i, data)
            except Exception as e:  # node-1 dies under it
                failure.append((i, e))
                return
            acked.append(i)
    t = threading.Thread(target=uploader, daemon=True)
    t.start()
    until(lambda: len(acked) >= 12, 60, "a dozen blocks acknowledged", cluster, interval=0.01)
    crash(cluster, 1)
    t.join(timeout=90)
    assert not t.is_alive(), "a PutSnapshotBlock hung on the killed node"
    assert failure, f"the upload finished before the kill ({len(acked)} blocks)"
    assert len(acked) < len(blocks)
    assert snapshot(c2, sid)["State"] == "pending"
    took = restart(cluster, 1)
    state = snapshot(cluster.client(1), sid)
    print(f"\nupload {sid}: {len(acked)} of {len(blocks)} blocks acknowledged at the kill "
          f"(block {failure[0][0]} in flight: {type(failure[0][1]).__name__}), "
          f"{state['State']} after a restart of {took:.1f} s")
    if state["State"] == "error":
        assert state.get("StateMessage"), "an error without a reason"
    else:
        assert state["State"] == "pending", state
        # The same client carries on: what was not acknowledged is put again.
        for i in [i for i in blocks if i not in acked]:
            put(ebs, sid, i, blocks[i])
        assert complete(ebs, sid, blocks)["Status"] == "completed"
        done = settled_snapshot(cluster, cluster.client(1), sid)
        assert done["State"] == "completed" and done["Progress"] == "100%", done
        same_as_uploaded(ebs, sid, {i: d for i, d in blocks.items() if any(d)})
    check_earlier_intact(cluster, earlier)


def delete_snapshots(ec2, ids):
    for sid in ids:
        ec2.delete_snapshot(SnapshotId=sid)
    for sid in ids:
        with pytest.raises(ClientError) as e:
            snapshot(ec2, sid)
        assert error_code(e.value) == "InvalidSnapshot.NotFound", sid


def image_snapshots(image):
    return {m["DeviceName"]: m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]
            if "Ebs" in m and m["Ebs"].get("SnapshotId")}


def check_image_data(cluster, image, sums):
    """An available image of the writer: every snapshot completed, the data volumes' with
    exactly the data the guest wrote."""
    c1, ebs = cluster.client(1), ebs_client(cluster, 1)
    snaps = image_snapshots(image)
    assert sorted(snaps) == ["/dev/sdf", "/dev/sdg", "/dev/xvda"], snaps
    for sid in snaps.values():
        assert snapshot(c1, sid)["State"] == "completed", sid
    read_all(ebs, snaps["/dev/xvda"])  # every block's checksum is checked
    for dev, md5 in sums.items():
        assert md5_of_snapshot(ebs, snaps[dev]) == md5, f"{dev} of {image['ImageId']}"


@needs_qemu
def test_kill_during_create_image(cluster, earlier, writer):
    """CreateImage of the stopped writer, asked through node-2 (handed to node-1, which owns the
    instance's zone); node-1 is killed while the image is pending."""
    iid, _, sums = writer
    c2 = cluster.client(2)

    def image(ami):
        return c2.describe_images(ImageIds=[ami])["Images"][0]
    ami = c2.create_image(InstanceId=iid, Name="crash-" + uuid.uuid4().hex[:8])["ImageId"]
    snaps = image_snapshots(image(ami))
    assert len(snaps) == 3, snaps

    def midway():
        # Node-1 stores the image's snapshots one after another (root, sdf, sdg): killed once
        # some are completed and some pending.
        img = image(ami)
        assert img["State"] == "pending", f"{ami} was {img['State']} before it was caught midway"
        states = {sid: snapshot(c2, sid)["State"] for sid in snaps.values()}
        return states if {"completed", "pending"} <= set(states.values()) else None
    states = until(midway, 60, f"{ami} with snapshots both completed and pending", cluster,
                   interval=0.05)
    crash(cluster, 1)
    assert image(ami)["State"] == "pending"  # node-2 leaves node-1's work alone
    assert {snapshot(c2, sid)["State"] for sid in snaps.values()} == set(states.values())
    took = restart(cluster, 1)
    after = until(lambda: (lambda i: i if i["State"] != "pending" else None)(image(ami)), 60,
                  f"{ami} leaving pending", cluster)
    settled = {sid: snapshot(c2, sid) for sid in snaps.values()}
    print(f"\nimage {ami}: pending at the kill (snapshots {sorted(states.values())}), "
          f"{after['State']} after a restart of {took:.1f} s (snapshots "
          f"{sorted(s['State'] for s in settled.values())}; {after.get('StateReason')})")
    for sid, s in settled.items():
        assert s["State"] in ("completed", "error"), f"{sid} of {ami} left {s['State']}"
    if after["State"] == "available":
        check_image_data(cluster, after, sums)
    else:
        assert after["State"] == "failed", after
        assert after.get("StateReason", {}).get("Message"), "failed without a reason"
        assert "error" in {s["State"] for s in settled.values()}, settled
        # The instance's volumes lost nothing: a new image has all of their data.
        again = c2.create_image(InstanceId=iid, Name="again-" + uuid.uuid4().hex[:8])["ImageId"]
        done = until(lambda: (lambda i: i if i["State"] != "pending" else None)(image(again)),
                     120, f"{again} leaving pending", cluster)
        assert done["State"] == "available", done
        check_image_data(cluster, done, sums)
        # What the crash left (the failed image, its snapshots) is deleted like anything else.
        c2.deregister_image(ImageId=ami)
        delete_snapshots(c2, list(snaps.values()))
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

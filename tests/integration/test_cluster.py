"""A node cluster as `scripts/cluster up` starts it: one PostgreSQL (the catalog), one SeaweedFS
(the S3 block store) and two openami nodes, node-1 owning us-east-1a and us-west-2a, node-2
us-east-1b and us-west-2b. Clients talk to either node; work on the other node's zone is handed
to that node through the catalog's request queue (api/src/handoff.rs) and answered by it.

Shown here: a volume created through node-1 in node-2's zone lives on node-2's disk and is
snapshotted and deleted through node-1; data written by an instance in zone a, snapshotted, is
there in a volume made from the snapshot in zone b, read by an instance launched there through
the other node (copy-on-read from the shared block store); CopyImage to another region through
either node; a request handed to a node survives a kill -9 of the node that received it; a zone
whose node is down is `impaired` and RunInstances/CreateVolume there fail at once.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, ROOT, error_code, openami_bin
from test_ebs import BLOCK, complete, put, read_all
from test_instances import guest_raw, needs_qemu, read_marker, script, write_marker  # noqa: F401

CLUSTER = str(ROOT / "scripts" / "cluster")
GC_GRACE = 3


class Cluster:
    def __init__(self, base: Path):
        self.dir = base
        # Garbage collection runs on both nodes every second (grace 3 s) through all the
        # tests of this module, not only the one about it.
        out = subprocess.run([CLUSTER, "up", str(base), "--nodes", "2",
                              "--regions", "us-east-1,us-west-2", "--openami", openami_bin(),
                              "--gc-interval", "1", "--gc-grace", str(GC_GRACE)],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/cluster up failed:\n{out.stderr}")
        self.env = dict(line.split("=", 1) for line in (base / "env").read_text().splitlines()
                        if "=" in line)

    def endpoint(self, k: int) -> str:
        return self.env[f"OPENAMI_NODE_{k}_ENDPOINT"]

    def node(self, k: int, action: str):
        out = subprocess.run([CLUSTER, "node", str(self.dir), str(k), action],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    def pid(self, k: int) -> int:
        return int((self.dir / f"node-{k}.pid").read_text().strip())

    def client(self, k: int, region="us-east-1", retries=3):
        return boto3.client(
            "ec2", region_name=region, endpoint_url=self.endpoint(k),
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": retries, "mode": "standard"},
                          read_timeout=120))

    def ebs(self, k: int):
        return boto3.client(
            "ebs", region_name="us-east-1", endpoint_url=self.endpoint(k),
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 3, "mode": "standard"}))

    def s3_env(self):
        return dict(line.split("=", 1) for line in (self.dir / "s3" / "env").read_text().splitlines()
                    if "=" in line)

    def s3(self):
        env = self.s3_env()
        return boto3.client("s3", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL_S3"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def store(self, *cmd):
        """`openami store CMD --json` against the cluster's bucket and catalog."""
        env = self.s3_env()
        scratch = self.dir / "store-cmd"
        scratch.mkdir(exist_ok=True)
        args = [openami_bin(), "store", *cmd, "--data-dir", str(scratch), "--blocks",
                "s3://openami/cluster", "--s3-endpoint", env["AWS_ENDPOINT_URL_S3"], "--json"]
        if cmd[0] in ("stats", "gc"):
            args += ["--catalog", self.env["OPENAMI_CATALOG_URL"]]
        run_env = dict(os.environ, OPENAMI_S3_ACCESS_KEY_ID=env["AWS_ACCESS_KEY_ID"],
                       OPENAMI_S3_SECRET_ACCESS_KEY=env["AWS_SECRET_ACCESS_KEY"])
        out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=run_env)
        return out.returncode, [json.loads(line) for line in out.stdout.splitlines()
                                if line.startswith("{")], out.stderr

    def log(self, k: int) -> str:
        return (self.dir / f"node-{k}.log").read_text(errors="replace")

    def cli_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.env["AWS_ACCESS_KEY_ID"],
                   AWS_SECRET_ACCESS_KEY=self.env["AWS_SECRET_ACCESS_KEY"],
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        return env

    def down(self):
        subprocess.run([CLUSTER, "down", str(self.dir)], capture_output=True, timeout=120)
        pg = self.dir / "pg.dir"
        if pg.exists():
            shutil.rmtree(pg.read_text().strip(), ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.down()


def eventually(check, seconds=30, what="condition"):
    deadline = time.time() + seconds
    while True:
        try:
            result = check()
            if result:
                return result
        except ClientError:
            pass
        if time.time() > deadline:
            raise AssertionError(f"{what} not within {seconds} s")
        time.sleep(0.3)


def connects(host, port) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def volume_dirs(cluster, k, volume_id):
    return list((cluster.dir / f"node-{k}" / "data").rglob(volume_id))


def zone_states(client):
    return {z["ZoneName"]: z["State"] for z in client.describe_availability_zones()["AvailabilityZones"]}


def test_both_nodes_report_every_zone(cluster):
    for k in (1, 2):
        states = zone_states(cluster.client(k))
        assert states["us-east-1a"] == "available" and states["us-east-1b"] == "available", states
        assert states["us-east-1c"] == "unavailable", states


def test_a_volume_in_the_other_nodes_zone_lives_there(cluster):
    c1, c2 = cluster.client(1), cluster.client(2)
    vol = c1.create_volume(Size=1, AvailabilityZone="us-east-1b")
    assert vol["AvailabilityZone"] == "us-east-1b"
    vid = vol["VolumeId"]
    c2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
    assert volume_dirs(cluster, 2, vid), "the volume's data is on node-2"
    assert not volume_dirs(cluster, 1, vid), "and not on node-1"
    # Its snapshot is taken by node-2, asked through node-1.
    snap = c1.create_snapshot(VolumeId=vid)["SnapshotId"]
    c1.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    # Errors come back as the owning node answered them.
    with pytest.raises(ClientError) as e:
        c1.attach_volume(VolumeId=vid, InstanceId="i-0123456789abcdef0", Device="/dev/sdf")
    assert error_code(e.value) == "InvalidInstanceID.NotFound"
    c1.delete_volume(VolumeId=vid)
    eventually(lambda: not volume_dirs(cluster, 2, vid), 10, "the volume's data removed on node-2")
    with pytest.raises(ClientError) as e:
        c2.describe_volumes(VolumeIds=[vid])
    assert error_code(e.value) == "InvalidVolume.NotFound"
    c1.delete_snapshot(SnapshotId=snap)


def test_a_handed_over_request_survives_a_kill_of_the_node_that_took_it(cluster):
    """Node-2 is killed first (its heartbeat is still fresh, so node-1 hands the request to it);
    then node-1, which took the request, is killed too. Nothing holds the request but the
    catalog: node-2, started again, finds it queued and runs it."""
    tag = "handoff-" + uuid.uuid4().hex[:8]
    c1 = cluster.client(1, retries=1)
    cluster.node(2, "kill")

    def call():
        try:
            c1.create_volume(Size=1, AvailabilityZone="us-east-1b", TagSpecifications=[
                {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": tag}]}])
        except Exception:
            pass  # node-1 dies under it
    t = threading.Thread(target=call, daemon=True)
    t.start()
    time.sleep(2)
    cluster.node(1, "kill")
    cluster.node(2, "start")
    c2 = cluster.client(2)
    found = eventually(lambda: c2.describe_volumes(
        Filters=[{"Name": "tag:Name", "Values": [tag]}])["Volumes"], 30,
        "the volume asked through the killed node")
    assert len(found) == 1 and found[0]["AvailabilityZone"] == "us-east-1b"
    c2.get_waiter("volume_available").wait(VolumeIds=[found[0]["VolumeId"]], WaiterConfig=FAST_WAITER)
    assert volume_dirs(cluster, 2, found[0]["VolumeId"])
    cluster.node(1, "start")
    c2.delete_volume(VolumeId=found[0]["VolumeId"])


@needs_qemu
def test_data_written_in_zone_a_is_read_by_an_instance_in_zone_b(cluster, guest_raw):  # noqa: F811
    c1, c2 = cluster.client(1), cluster.client(2)
    out = subprocess.run([openami_bin(), "snapshot", "upload", str(guest_raw), "--endpoint",
                          cluster.endpoint(2), "--region", "us-east-1", "--no-progress"],
                         env=cluster.cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    root_snap = out.stdout.strip()
    c1.get_waiter("snapshot_completed").wait(SnapshotIds=[root_snap], WaiterConfig=FAST_WAITER)
    image = c1.register_image(
        Name="cluster-guest-" + uuid.uuid4().hex[:8], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": root_snap, "DeleteOnTermination": True}}])["ImageId"]
    marker = "C-" + uuid.uuid4().hex[:12]

    # Zone a (node-1), asked through node-2: write the marker to a data volume.
    writer = c2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        Placement={"AvailabilityZone": "us-east-1a"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf",
                              "Ebs": {"VolumeSize": 1, "DeleteOnTermination": False}}],
        UserData=script(write_marker("/dev/vdb", marker)))["Instances"][0]
    assert writer["Placement"]["AvailabilityZone"] == "us-east-1a"
    wid = writer["InstanceId"]
    eventually(lambda: c2.describe_instances(InstanceIds=[wid])["Reservations"][0]["Instances"][0]
               ["State"]["Name"] == "stopped", 240, "the writer powering off")
    data_vol = [d["Ebs"]["VolumeId"] for d in
                c2.describe_instances(InstanceIds=[wid])["Reservations"][0]["Instances"][0]
                ["BlockDeviceMappings"] if d["DeviceName"] == "/dev/sdf"][0]
    assert volume_dirs(cluster, 1, data_vol) and not volume_dirs(cluster, 2, data_vol)
    snap = c2.create_snapshot(VolumeId=data_vol)["SnapshotId"]
    c2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)

    # Zone b (node-2), asked through node-1: a volume from that snapshot, read by an instance.
    reader = c1.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        Placement={"AvailabilityZone": "us-east-1b"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf",
                              "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
        UserData=script(read_marker("/dev/vdb", wait=True)))["Instances"][0]
    rid = reader["InstanceId"]
    eventually(lambda: c1.describe_instances(InstanceIds=[rid])["Reservations"][0]["Instances"][0]
               ["State"]["Name"] == "stopped", 240, "the reader powering off")
    console = c1.get_console_output(InstanceId=rid).get("Output", "")
    assert f"marker=[{marker}]" in console, console[-2000:]

    # CopyImage to another region, asked through node-2 (regional work, any node).
    west = cluster.client(2, region="us-west-2")
    copy = west.copy_image(SourceImageId=image, SourceRegion="us-east-1", Name="cluster-copy")["ImageId"]
    west.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig={"Delay": 1, "MaxAttempts": 300})

    # A security group changed through node-1 reaches a running instance on node-2: the port
    # its new rule opens is forwarded on the instance's public address within a few
    # heartbeats, and closed again when the rule is revoked.
    sg = c1.create_security_group(GroupName="cluster-sg-" + uuid.uuid4().hex[:8],
                                  Description="cluster test")["GroupId"]
    idle = c1.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                            Placement={"AvailabilityZone": "us-east-1b"},
                            SecurityGroupIds=[sg])["Instances"][0]["InstanceId"]

    def public_ip():
        i = c1.describe_instances(InstanceIds=[idle])["Reservations"][0]["Instances"][0]
        return i["State"]["Name"] == "running" and i.get("PublicIpAddress")
    ip = eventually(public_ip, 120, "the idle instance running with a public address")
    port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000
    rule = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    assert not connects(ip, port)
    c1.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule)
    eventually(lambda: connects(ip, port), 20, f"{ip}:{port} forwarded on node-2")
    c1.revoke_security_group_ingress(GroupId=sg, IpPermissions=rule)
    eventually(lambda: not connects(ip, port), 20, f"{ip}:{port} closed on node-2")

    c1.terminate_instances(InstanceIds=[wid])
    c2.terminate_instances(InstanceIds=[rid, idle])  # one call per zone's node
    eventually(lambda: c1.describe_instances(InstanceIds=[idle])["Reservations"][0]["Instances"][0]
               ["State"]["Name"] == "terminated", 120, "the idle instance terminated")
    c1.delete_security_group(GroupId=sg)


def test_a_zone_whose_node_is_down_is_impaired_and_refuses_at_once(cluster):
    c1 = cluster.client(1, retries=1)
    existing = c1.create_volume(Size=1, AvailabilityZone="us-east-1b")["VolumeId"]
    cluster.node(2, "kill")
    try:
        eventually(lambda: zone_states(c1)["us-east-1b"] == "impaired", 30, "us-east-1b impaired")
        started = time.time()
        with pytest.raises(ClientError) as e:
            c1.create_volume(Size=1, AvailabilityZone="us-east-1b")
        assert error_code(e.value) == "InsufficientVolumeCapacity"
        assert time.time() - started < 10
        # Its existing volume is on the dead node: refused, never deleted by node-1 instead.
        with pytest.raises(ClientError) as e:
            c1.delete_volume(VolumeId=existing)
        assert error_code(e.value) == "ServiceUnavailable"
    finally:
        cluster.node(2, "start")
    eventually(lambda: zone_states(c1)["us-east-1b"] == "available", 30, "us-east-1b available again")
    assert volume_dirs(cluster, 2, existing), "the volume's data is still on node-2"
    c1.delete_volume(VolumeId=existing)
    eventually(lambda: not volume_dirs(cluster, 2, existing), 10, "deleted by node-2 once it is back")


def block_keys(data: bytes):
    """The bucket keys a block with this content has: live, and as a GC fossil."""
    hexd = hashlib.sha256(data).hexdigest()
    base = "cluster/regions/us-east-1"
    return f"{base}/blocks/{hexd[:2]}/{hexd}", f"{base}/fossils/{hexd[:2]}/{hexd}"


def in_bucket(s3, key) -> bool:
    try:
        s3.head_object(Bucket="openami", Key=key)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def test_gc_on_both_nodes_keeps_what_is_referenced_and_frees_the_rest(cluster):
    """Both nodes collect every second (grace 3 s) while both take EBS direct uploads and
    node-2 takes snapshots of a volume: every completed snapshot reads back, scrub is clean,
    and the blocks only deleted snapshots had are gone from the bucket after the grace."""
    ec2 = cluster.client(1)
    shared = os.urandom(BLOCK)  # in every upload: dedup hits on a block GC sees come and go
    kept, doomed, errors = {}, {}, []
    stop_at = time.time() + 20

    def uploads(k):
        ebs, n = cluster.ebs(k), 0
        try:
            while time.time() < stop_at:
                blocks = {0: shared, 1: os.urandom(BLOCK), 3: os.urandom(BLOCK)}
                sid = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
                for i, data in blocks.items():
                    put(ebs, sid, i, data)
                complete(ebs, sid, blocks)
                eventually(lambda: ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"]
                           == "completed", 60, f"{sid} completed")
                if n % 2:
                    ec2.delete_snapshot(SnapshotId=sid)
                    doomed[sid] = blocks
                else:
                    kept[sid] = blocks
                n += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"uploads via node-{k}: {e!r}")

    def volume_snapshots():
        try:
            source = next(iter(kept))
            vid = ec2.create_volume(SnapshotId=source, AvailabilityZone="us-east-1b")["VolumeId"]
            ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
            while time.time() < stop_at:
                snap = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
                ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap],
                                                          WaiterConfig=FAST_WAITER)
                kept[snap] = kept[source]
            ec2.delete_volume(VolumeId=vid)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"volume snapshots: {e!r}")

    threads = [threading.Thread(target=uploads, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    eventually(lambda: kept, 60, "a first upload")
    threads.append(threading.Thread(target=volume_snapshots))
    threads[-1].start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert len(kept) >= 3 and len(doomed) >= 2, (len(kept), len(doomed))

    # Past the grace period, with both nodes collecting, every kept snapshot is whole.
    time.sleep(GC_GRACE + 3)
    for sid, blocks in kept.items():
        assert read_all(cluster.ebs(2), sid) == blocks, sid
    code, reports, err = cluster.store("scrub", "--region", "us-east-1")
    assert code == 0 and reports and not reports[0]["missing_blocks"], (reports, err)

    # The blocks only deleted snapshots held leave the bucket (blocks/ and fossils/).
    s3 = cluster.s3()
    gone = [d for blocks in doomed.values() for i, d in blocks.items() if i != 0]
    eventually(lambda: not any(in_bucket(s3, key) for d in gone for key in block_keys(d)),
               6 * GC_GRACE + 20, "the deleted snapshots' blocks freed")
    live = [d for blocks in kept.values() for d in blocks.values()]
    assert all(in_bucket(s3, block_keys(d)[0]) for d in live), "a kept block is not in blocks/"
    for k in (1, 2):
        steps = [line for line in cluster.log(k).splitlines() if "cluster gc step" in line]
        assert steps, f"node-{k} never collected"
    for sid in kept:
        ec2.delete_snapshot(SnapshotId=sid)
    # The single-process collector would not see the nodes' sessions: it refuses.
    code, _, err = cluster.store("gc", "--region", "us-east-1")
    assert code != 0 and "node cluster" in err, err


def test_a_block_token_from_one_node_reads_on_the_other(cluster):
    """Clients behind a load balancer list on one node and read on another: the token key is
    the cluster's (kept in the catalog), not each node's."""
    ebs1, ebs2 = cluster.ebs(1), cluster.ebs(2)
    data = os.urandom(BLOCK)
    sid = ebs1.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
    put(ebs1, sid, 2, data)
    complete(ebs1, sid, {2: data})
    ec2 = cluster.client(2)
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    [listed] = ebs1.list_snapshot_blocks(SnapshotId=sid)["Blocks"]
    got = ebs2.get_snapshot_block(SnapshotId=sid, BlockIndex=2, BlockToken=listed["BlockToken"])
    assert got["BlockData"].read() == data
    ec2.delete_snapshot(SnapshotId=sid)

"""A node cluster: two `openami serve` nodes on one PostgreSQL catalog, each owning one
availability zone (`--node-id a --zone us-east-1a`, `--node-id b --zone us-east-1b`),
each with its own data directory (volumes and, here, blocks on its own disk).

DescribeAvailabilityZones reports each zone from its node's heartbeat (`available`,
`impaired` once the node has been silent ~10 s, `unavailable` with no node); CreateVolume
and RunInstances into a zone whose node is down answer the capacity errors at once; a
zone another live node serves is refused with a message naming that node; AttachVolume
across zones is InvalidVolume.ZoneMismatch; a restarting node recovers only its own
resources; a node claiming a zone a live node owns exits with one error line.

PostgreSQL is a real server started here (the fixture of test_pg_catalog.py)."""

import json
import signal
import subprocess
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, Server, error_code, free_port, openami_bin
from test_instances import guest_raw, needs_qemu, upload, wait_until  # noqa: F401 (fixture)
from test_pg_catalog import Postgres


def node_args(pg, node_id, zone):
    return ["--catalog", pg.url, "--node-id", node_id, "--zone", zone]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("nodes")
    pg = Postgres(base)
    for n in ("a", "b", "c", "cli"):
        (base / n).mkdir()
    nodes = {n: Server(base / n / "data", extra_args=node_args(pg, n, f"us-east-1{n}"))
             for n in ("a", "b")}
    out = subprocess.run([openami_bin(), "account", "create", "alice-" + uuid.uuid4().hex[:6],
                          "--data-dir", str(base / "cli" / "data"), "--catalog", pg.url],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    yield pg, nodes, base, json.loads(out.stdout)
    for node in nodes.values():
        if node.proc.poll() is None:
            node.stop()
    pg.stop()
    pg.remove()


def client(node, creds):
    return boto3.client(
        "ec2", endpoint_url=node.endpoint, region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        config=Config(retries={"max_attempts": 1}))


def zones(ec2):
    return {z["ZoneName"]: z for z in ec2.describe_availability_zones()["AvailabilityZones"]}


def states(ec2):
    return {name: z["State"] for name, z in zones(ec2).items()}


def refused(call, **kw):
    started = time.monotonic()
    with pytest.raises(ClientError) as e:
        call(**kw)
    return e.value, time.monotonic() - started


def test_zone_states_and_placement_while_both_nodes_live(cluster):
    pg, nodes, base, alice = cluster
    a, b = client(nodes["a"], alice), client(nodes["b"], alice)
    for ec2 in (a, b):
        assert states(ec2) == {"us-east-1a": "available", "us-east-1b": "available",
                               "us-east-1c": "unavailable"}
        c = zones(ec2)["us-east-1c"]
        assert c["Messages"] == [{"Message": "No openami node serves this zone."}]
        assert zones(ec2)["us-east-1a"]["Messages"] == []
        got = ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["unavailable"]}])["AvailabilityZones"]
        assert [z["ZoneName"] for z in got] == ["us-east-1c"]

    vol = a.create_volume(AvailabilityZone="us-east-1a", Size=1)
    assert vol["State"] == "available"
    # Another live node's zone: handed to node b, which makes it (see test_cluster.py).
    there = a.create_volume(AvailabilityZone="us-east-1b", Size=1)
    assert there["AvailabilityZone"] == "us-east-1b"
    assert list((base / "b").rglob(there["VolumeId"])) and not list((base / "a").rglob(there["VolumeId"]))
    # A zone nobody serves: refused at once; never a fake success.
    err, _ = refused(a.create_volume, AvailabilityZone="us-east-1c", Size=1)
    assert error_code(err) == "Unsupported"
    # Nothing was created by the refusal.
    assert sorted(v["VolumeId"] for v in a.describe_volumes()["Volumes"]) == sorted(
        [vol["VolumeId"], there["VolumeId"]])
    b.delete_volume(VolumeId=there["VolumeId"])


@needs_qemu
def test_attach_volume_across_zones_is_refused(cluster, guest_raw):  # noqa: F811
    pg, nodes, base, alice = cluster
    a, b = client(nodes["a"], alice), client(nodes["b"], alice)
    snap = upload(nodes["a"], alice, guest_raw)
    a.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    image = a.register_image(
        Name="nodes-guest", Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
    )["ImageId"]
    # No zone given: node a launches into its own zone.
    inst = a.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                           UserData="#!/bin/sh\necho hi\n")["Instances"][0]
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1a"
    wait_until(a, inst["InstanceId"], "stopped")
    other = b.create_volume(AvailabilityZone="us-east-1b", Size=1)["VolumeId"]
    err, _ = refused(a.attach_volume, VolumeId=other, InstanceId=inst["InstanceId"],
                     Device="/dev/sdf")
    assert error_code(err) == "InvalidVolume.ZoneMismatch"
    b.delete_volume(VolumeId=other)


def test_a_dead_node_impairs_its_zone_and_a_restart_recovers_only_its_own(cluster):
    pg, nodes, base, alice = cluster
    a = client(nodes["a"], alice)
    before = {v["VolumeId"]: v["State"] for v in a.describe_volumes()["Volumes"]}
    snaps_before = {s["SnapshotId"]: s["State"]
                    for s in a.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    inst_before = {i["InstanceId"]: i["State"]["Name"]
                   for r in a.describe_instances()["Reservations"] for i in r["Instances"]}
    assert before

    nodes["b"].proc.send_signal(signal.SIGKILL)
    nodes["b"].proc.wait(timeout=10)
    nodes["b"].log.close()
    killed = time.monotonic()
    while states(a)["us-east-1b"] != "impaired":
        assert time.monotonic() - killed < 20, "zone us-east-1b never became impaired"
        time.sleep(0.5)
    impaired_after = time.monotonic() - killed
    print(f"us-east-1b impaired {impaired_after:.1f} s after node b was killed")
    assert 8 <= impaired_after <= 15
    msg = zones(a)["us-east-1b"]["Messages"][0]["Message"]
    assert "node b" in msg, msg
    assert states(a)["us-east-1a"] == "available"

    err, took = refused(a.create_volume, AvailabilityZone="us-east-1b", Size=1)
    assert error_code(err) == "InsufficientVolumeCapacity" and took < 2, (err, took)
    err, took = refused(a.run_instances, ImageId="ami-0123456789abcdef0", MinCount=1,
                        MaxCount=1, Placement={"AvailabilityZone": "us-east-1b"})
    assert error_code(err) == "InsufficientInstanceCapacity" and took < 2, (err, took)

    # Node b comes back (same data dir): its zone is available again, and its recovery
    # left node a's volumes, snapshots and instances as they were.
    nodes["b"] = Server(base / "b" / "data", extra_args=node_args(pg, "b", "us-east-1b"))
    assert states(a) == {"us-east-1a": "available", "us-east-1b": "available",
                         "us-east-1c": "unavailable"}
    assert {v["VolumeId"]: v["State"] for v in a.describe_volumes()["Volumes"]} == before
    assert {s["SnapshotId"]: s["State"]
            for s in a.describe_snapshots(OwnerIds=["self"])["Snapshots"]} == snaps_before
    assert {i["InstanceId"]: i["State"]["Name"]
            for r in a.describe_instances()["Reservations"] for i in r["Instances"]} == inst_before


def test_a_zone_of_a_live_node_cannot_be_claimed(cluster):
    pg, nodes, base, alice = cluster
    port = free_port()
    out = subprocess.run(
        [openami_bin(), "serve", "--data-dir", str(base / "c" / "data"),
         "--listen", f"127.0.0.1:{port}", "--gc-interval", "0",
         *node_args(pg, "c", "us-east-1c,us-east-1a")],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    assert "zone us-east-1a is owned by node a, which is alive" in errors[0], errors[0]
    # The refused node claimed nothing: us-east-1c is still unavailable.
    assert states(client(nodes["a"], alice))["us-east-1c"] == "unavailable"
    # Flags: both or neither; zones of served regions only.
    for args, needle in ([["--node-id", "c"], "--zone"], [["--zone", "us-east-1c"], "--node-id"],
                         [["--node-id", "c", "--zone", "eu-central-1a"], "eu-central-1a"]):
        out = subprocess.run(
            [openami_bin(), "serve", "--data-dir", str(base / "c" / "data"),
             "--listen", f"127.0.0.1:{port}", "--catalog", pg.url, *args],
            capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and needle in out.stderr, (args, out.stderr)
    # A server without a node identity refuses a catalog that live nodes serve.
    out = subprocess.run(
        [openami_bin(), "serve", "--data-dir", str(base / "c" / "data"),
         "--listen", f"127.0.0.1:{port}", "--catalog", pg.url],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "served by openami nodes" in out.stderr, out.stderr

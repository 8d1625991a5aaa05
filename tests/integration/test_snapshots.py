"""Snapshots through boto3 and the AWS CLI: incremental creation from volumes, waiters,
describe semantics (owners, restorable-by, filters, pagination), sharing with
createVolumePermission, block public access for snapshots, CopySnapshot across regions,
deletion."""

import uuid

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code
from test_ebs import ebs_client


def snapshot_of_new_volume(c, zone="us-east-1a", size=1, **kw):
    vid = c.create_volume(AvailabilityZone=zone, Size=size)["VolumeId"]
    snap = c.create_snapshot(VolumeId=vid, **kw)
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[snap["SnapshotId"]], WaiterConfig=FAST_WAITER)
    return vid, snap


def test_snapshot_lifecycle(alice, ec2):
    c = ec2(alice)
    vid, snap = snapshot_of_new_volume(
        c, Description="nightly",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}])
    sid = snap["SnapshotId"]
    assert sid.startswith("snap-") and snap["State"] in ("pending", "completed")
    assert snap["VolumeId"] == vid and snap["OwnerId"] == alice["AccountId"]
    got = c.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert got["State"] == "completed" and got["Progress"] == "100%"
    assert got["VolumeSize"] == 1 and got["Description"] == "nightly"
    assert {"Key": "k", "Value": "v"} in got["Tags"]
    # A volume from the snapshot, larger than the original.
    v2 = c.create_volume(AvailabilityZone="us-east-1b", SnapshotId=sid, Size=3)
    assert v2["SnapshotId"] == sid and v2["Size"] == 3
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_volume(AvailabilityZone="us-east-1b", SnapshotId=sid, Size=0)
    assert error_code(e.value) == "InvalidParameterValue"
    c.delete_snapshot(SnapshotId=sid)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_snapshots(SnapshotIds=[sid])
    assert error_code(e.value) == "InvalidSnapshot.NotFound"
    # The volume made from it still works after the snapshot is gone.
    assert c.describe_volumes(VolumeIds=[v2["VolumeId"]])["Volumes"][0]["State"] == "available"


def test_owner_and_filter_semantics(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    _, mine = snapshot_of_new_volume(a, Description="owner-test-alpha")
    sid = mine["SnapshotId"]
    assert sid in {s["SnapshotId"] for s in a.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert sid in {s["SnapshotId"] for s in a.describe_snapshots(OwnerIds=[alice["AccountId"]])["Snapshots"]}
    assert sid not in {s["SnapshotId"] for s in a.describe_snapshots(OwnerIds=[bob["AccountId"]])["Snapshots"]}
    found = a.describe_snapshots(Filters=[{"Name": "description", "Values": ["owner-test-*"]},
                                          {"Name": "status", "Values": ["completed"]}])["Snapshots"]
    assert [s["SnapshotId"] for s in found] == [sid]
    # Bob cannot see it by any means.
    assert sid not in {s["SnapshotId"] for s in b.describe_snapshots()["Snapshots"]}
    assert sid not in {s["SnapshotId"] for s in b.describe_snapshots(OwnerIds=[alice["AccountId"]])["Snapshots"]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        b.describe_snapshots(SnapshotIds=[sid])
    assert error_code(e.value) == "InvalidSnapshot.NotFound"


def test_create_volume_permission_sharing(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    _, snap = snapshot_of_new_volume(a)
    sid = snap["SnapshotId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        b.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)
    assert error_code(e.value) == "InvalidSnapshot.NotFound"
    a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                OperationType="add", UserIds=[bob["AccountId"]])
    perms = a.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"UserId": bob["AccountId"]}]
    # Bob now sees it (restorable by self) and can make a volume, but cannot modify or delete it.
    restorable = b.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]
    assert sid in {s["SnapshotId"] for s in restorable}
    shared = [s for s in restorable if s["SnapshotId"] == sid][0]
    assert shared["OwnerId"] == alice["AccountId"]
    v = b.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)
    assert v["Size"] == 1
    for call in (lambda: b.delete_snapshot(SnapshotId=sid),
                 lambda: b.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission"),
                 lambda: b.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                                     OperationType="add", GroupNames=["all"])):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "InvalidSnapshot.NotFound"
    # Public via the structured form, then reset to private.
    a.modify_snapshot_attribute(SnapshotId=sid, CreateVolumePermission={"Add": [{"Group": "all"}],
                                                                       "Remove": [{"UserId": bob["AccountId"]}]})
    perms = a.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"Group": "all"}]
    assert sid in {s["SnapshotId"] for s in b.describe_snapshots(RestorableByUserIds=["all"])["Snapshots"]}
    a.reset_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
    assert a.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")["CreateVolumePermissions"] == []
    assert sid not in {s["SnapshotId"] for s in b.describe_snapshots()["Snapshots"]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                    OperationType="add", UserIds=["12345"])
    assert error_code(e.value) == "InvalidUserID.Malformed"


def test_block_public_access_for_snapshots(server, bob, ec2):
    creds = server.create_account("bpa-" + uuid.uuid4().hex[:6])
    a, b = ec2(creds), ec2(bob)
    bob_ebs = ebs_client(server, bob)
    assert a.get_snapshot_block_public_access_state()["State"] == "unblocked"
    _, snap = snapshot_of_new_volume(a)
    sid = snap["SnapshotId"]
    a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                OperationType="add", GroupNames=["all"])
    _, other = snapshot_of_new_volume(a)

    def public_to_bob():
        seen = sid in {s["SnapshotId"] for s in b.describe_snapshots(RestorableByUserIds=["all"])["Snapshots"]}
        try:
            bob_ebs.list_snapshot_blocks(SnapshotId=sid)
            readable = True
        except botocore.exceptions.ClientError:
            readable = False
        assert seen == readable
        return seen
    assert public_to_bob()

    # All sharing blocked: the public snapshot is private to everyone else, though its
    # attribute still says `all`; and nothing may newly be made public.
    assert a.enable_snapshot_block_public_access(State="block-all-sharing")["State"] == "block-all-sharing"
    got = a.get_snapshot_block_public_access_state()
    assert (got["State"], got["ManagedBy"]) == ("block-all-sharing", "account")
    assert not public_to_bob()
    for call in (lambda: b.describe_snapshots(SnapshotIds=[sid]),
                 lambda: b.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "InvalidSnapshot.NotFound"
    assert a.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")[
        "CreateVolumePermissions"] == [{"Group": "all"}]
    assert a.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["SnapshotId"] == sid
    with pytest.raises(botocore.exceptions.ClientError) as e:
        a.modify_snapshot_attribute(SnapshotId=other["SnapshotId"], Attribute="createVolumePermission",
                                    OperationType="add", GroupNames=["all"])
    assert error_code(e.value) == "OperationNotPermitted"
    # Sharing with one account is not public sharing.
    a.modify_snapshot_attribute(SnapshotId=other["SnapshotId"], Attribute="createVolumePermission",
                                OperationType="add", UserIds=[bob["AccountId"]])
    assert b.describe_snapshots(SnapshotIds=[other["SnapshotId"]])["Snapshots"]

    # New sharing blocked only: the snapshot that was public is public again.
    a.enable_snapshot_block_public_access(State="block-new-sharing")
    assert public_to_bob()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        a.modify_snapshot_attribute(SnapshotId=other["SnapshotId"], Attribute="createVolumePermission",
                                    OperationType="add", GroupNames=["all"])
    assert error_code(e.value) == "OperationNotPermitted"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        a.enable_snapshot_block_public_access(State="block-some-sharing")
    assert error_code(e.value) == "InvalidParameterValue"
    # The setting is per region.
    assert ec2(creds, region="eu-west-1").get_snapshot_block_public_access_state()["State"] == "unblocked"

    assert a.disable_snapshot_block_public_access()["State"] == "unblocked"
    a.modify_snapshot_attribute(SnapshotId=other["SnapshotId"], Attribute="createVolumePermission",
                                OperationType="add", GroupNames=["all"])
    assert other["SnapshotId"] in {s["SnapshotId"] for s in b.describe_snapshots(RestorableByUserIds=["all"])["Snapshots"]}


def test_copy_snapshot_across_regions(alice, ec2):
    east, west = ec2(alice), ec2(alice, region="us-west-2")
    _, snap = snapshot_of_new_volume(east, Description="to copy")
    copied = west.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=snap["SnapshotId"],
                                Description="copy", TagSpecifications=[
                                    {"ResourceType": "snapshot", "Tags": [{"Key": "copy", "Value": "yes"}]}])
    cid = copied["SnapshotId"]
    assert cid != snap["SnapshotId"]
    west.get_waiter("snapshot_completed").wait(SnapshotIds=[cid], WaiterConfig=FAST_WAITER)
    got = west.describe_snapshots(SnapshotIds=[cid])["Snapshots"][0]
    assert got["VolumeSize"] == 1 and got["Description"] == "copy"
    assert {"Key": "copy", "Value": "yes"} in got["Tags"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        east.describe_snapshots(SnapshotIds=[cid])
    assert error_code(e.value) == "InvalidSnapshot.NotFound"
    # Same-region copy and a copy of something that does not exist.
    same = east.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=snap["SnapshotId"])
    east.get_waiter("snapshot_completed").wait(SnapshotIds=[same["SnapshotId"]], WaiterConfig=FAST_WAITER)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        west.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId="snap-00000000000000000")
    assert error_code(e.value) == "InvalidSnapshot.NotFound"
    # A volume in the destination region from the copy.
    v = west.create_volume(AvailabilityZone="us-west-2a", SnapshotId=cid)
    assert v["Size"] == 1


def test_snapshot_pagination(alice, ec2):
    c = ec2(alice, region="eu-west-1")
    vid = c.create_volume(AvailabilityZone="eu-west-1a", Size=1)["VolumeId"]
    made = set()
    for _ in range(7):
        s = c.create_snapshot(VolumeId=vid)
        c.get_waiter("snapshot_completed").wait(SnapshotIds=[s["SnapshotId"]], WaiterConfig=FAST_WAITER)
        made.add(s["SnapshotId"])
    pages = list(c.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], PaginationConfig={"PageSize": 5}))
    assert len(pages) >= 2
    assert made <= {s["SnapshotId"] for p in pages for s in p["Snapshots"]}


def test_delete_errors(alice, bob, ec2):
    a = ec2(alice)
    for sid, code in [("snap-00000000000000000", "InvalidSnapshot.NotFound"), ("nope", "InvalidSnapshotID.Malformed")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            a.delete_snapshot(SnapshotId=sid)
        assert error_code(e.value) == code


def test_aws_cli_snapshot_flow(alice, aws):
    v = aws(alice, "ec2", "create-volume", "--size", "1", "--availability-zone", "us-east-1a")
    s = aws(alice, "ec2", "create-snapshot", "--volume-id", v["VolumeId"], "--description", "cli")
    aws(alice, "ec2", "wait", "snapshot-completed", "--snapshot-ids", s["SnapshotId"])
    out = aws(alice, "ec2", "describe-snapshots", "--owner-ids", "self",
              "--filters", "Name=description,Values=cli")
    assert s["SnapshotId"] in [x["SnapshotId"] for x in out["Snapshots"]]

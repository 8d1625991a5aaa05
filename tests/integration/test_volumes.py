"""Volumes through boto3 and the AWS CLI: create, describe, filters, pagination,
modify, delete, waiters, limits and errors."""

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code


def make_volume(client, size=1, **kw):
    return client.create_volume(AvailabilityZone="us-east-1a", Size=size, **kw)


def test_create_describe_delete_with_waiters(alice, ec2):
    c = ec2(alice)
    v = make_volume(c, 2, VolumeType="gp3",
                    TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}])
    vid = v["VolumeId"]
    assert vid.startswith("vol-") and len(vid) == 21
    assert v["Size"] == 2 and v["VolumeType"] == "gp3"
    assert v["Iops"] == 3000 and v["Throughput"] == 125
    assert {"Key": "Name", "Value": "data"} in v["Tags"]
    c.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
    got = c.describe_volumes(VolumeIds=[vid])["Volumes"][0]
    assert got["State"] == "available"
    assert got["AvailabilityZone"] == "us-east-1a"
    assert got["Attachments"] == []
    c.delete_volume(VolumeId=vid)
    c.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes(VolumeIds=[vid])
    assert error_code(e.value) == "InvalidVolume.NotFound"


def test_filters_and_wildcards(alice, ec2):
    c = ec2(alice)
    a = make_volume(c, 1, TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "red-1"}]}])
    b = make_volume(c, 3, VolumeType="standard",
                    TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "blue"}]}])
    ids = lambda resp: {v["VolumeId"] for v in resp["Volumes"]}
    assert ids(c.describe_volumes(Filters=[{"Name": "tag:team", "Values": ["red-*"]}])) == {a["VolumeId"]}
    assert ids(c.describe_volumes(Filters=[{"Name": "tag:team", "Values": ["re?-1", "blue"]}])) >= {a["VolumeId"], b["VolumeId"]}
    both = c.describe_volumes(Filters=[{"Name": "size", "Values": ["3"]}, {"Name": "volume-type", "Values": ["standard"]}])
    assert b["VolumeId"] in ids(both) and a["VolumeId"] not in ids(both)
    assert a["VolumeId"] in ids(c.describe_volumes(Filters=[{"Name": "tag-key", "Values": ["team"]}]))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert error_code(e.value) == "InvalidParameterValue"


def test_pagination_and_paginator(alice, ec2):
    c = ec2(alice, region="ap-northeast-2")
    made = {c.create_volume(AvailabilityZone="ap-northeast-2a", Size=1)["VolumeId"] for _ in range(12)}
    first = c.describe_volumes(MaxResults=5)
    assert len(first["Volumes"]) == 5 and "NextToken" in first
    seen = []
    token = None
    while True:
        kw = {"MaxResults": 5}
        if token:
            kw["NextToken"] = token
        page = c.describe_volumes(**kw)
        seen += [v["VolumeId"] for v in page["Volumes"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)), "no volume twice"
    assert made <= set(seen)
    pages = c.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5})
    assert made <= {v["VolumeId"] for p in pages for v in p["Volumes"]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes(MaxResults=2)
    assert error_code(e.value) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes(VolumeIds=[next(iter(made))], MaxResults=5)
    assert error_code(e.value) == "InvalidParameterCombination"


@pytest.mark.parametrize("kwargs,code", [
    ({"Size": 0}, "InvalidParameterValue"),
    ({"Size": 16385, "VolumeType": "gp2"}, "InvalidParameterValue"),
    ({"Size": 10, "VolumeType": "st1"}, "InvalidParameterValue"),
    ({"Size": 10, "VolumeType": "io1"}, "MissingParameter"),
    ({"Size": 10, "VolumeType": "gp2", "Iops": 500}, "InvalidParameterCombination"),
    ({"Size": 10, "VolumeType": "gp3", "Iops": 100}, "InvalidParameterValue"),
    ({"Size": 10, "VolumeType": "magnetic"}, "InvalidParameterValue"),
    ({"Size": 1, "SnapshotId": "snap-00000000000000000"}, "InvalidSnapshot.NotFound"),
    ({"Size": 1, "SnapshotId": "snap-bad"}, "InvalidSnapshotID.Malformed"),
])
def test_create_volume_errors(alice, ec2, kwargs, code):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2(alice).create_volume(AvailabilityZone="us-east-1a", **kwargs)
    assert error_code(e.value) == code


def test_zone_checks(alice, ec2):
    c = ec2(alice)
    for zone in ["us-east-1z", "eu-west-1a"]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.create_volume(AvailabilityZone=zone, Size=1)
        assert error_code(e.value) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_volume(Size=1)
    assert error_code(e.value) == "MissingParameter"


def test_large_and_io2_volumes_allocate_nothing(alice, ec2, server):
    c = ec2(alice)
    v = c.create_volume(AvailabilityZone="us-east-1b", Size=16384, VolumeType="io2", Iops=1000)
    assert v["Size"] == 16384 and v["Iops"] == 1000
    c.delete_volume(VolumeId=v["VolumeId"])


def test_modify_volume_grows_and_changes_type(alice, ec2):
    c = ec2(alice)
    vid = make_volume(c, 1)["VolumeId"]
    m = c.modify_volume(VolumeId=vid, Size=4, VolumeType="gp3")["VolumeModification"]
    assert m["OriginalSize"] == 1 and m["TargetSize"] == 4 and m["TargetVolumeType"] == "gp3"
    got = c.describe_volumes(VolumeIds=[vid])["Volumes"][0]
    assert got["Size"] == 4 and got["VolumeType"] == "gp3"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.modify_volume(VolumeId=vid, Size=2)
    assert error_code(e.value) == "InvalidParameterValue"


def test_volume_modifications_are_recorded_and_filterable(alice, bob, ec2, aws):
    c = ec2(alice)
    vid = make_volume(c, 1, VolumeType="gp3")["VolumeId"]
    untouched = make_volume(c, 1)["VolumeId"]
    # Never modified: named, it is an error; unnamed, it is absent.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes_modifications(VolumeIds=[vid])
    assert error_code(e.value) == "InvalidVolumeModification.NotFound"
    assert vid not in {m["VolumeId"] for m in c.describe_volumes_modifications()["VolumesModifications"]}
    c.modify_volume(VolumeId=vid, Size=3)
    c.modify_volume(VolumeId=vid, Iops=4000, Throughput=250)
    # Only the most recent modification, complete (it takes effect at once here).
    [m] = c.describe_volumes_modifications(VolumeIds=[vid])["VolumesModifications"]
    assert m["ModificationState"] == "completed" and m["Progress"] == 100
    assert (m["OriginalSize"], m["TargetSize"]) == (3, 3)
    assert (m["OriginalIops"], m["TargetIops"]) == (3000, 4000)
    assert (m["OriginalThroughput"], m["TargetThroughput"]) == (125, 250)
    assert m["OriginalVolumeType"] == m["TargetVolumeType"] == "gp3"
    assert m["StartTime"] <= m["EndTime"]
    ids = lambda **kw: {m["VolumeId"] for m in c.describe_volumes_modifications(**kw)["VolumesModifications"]}
    assert vid in ids(Filters=[{"Name": "target-iops", "Values": ["4000"]}])
    assert vid not in ids(Filters=[{"Name": "target-iops", "Values": ["3000"]}])
    assert vid in ids(Filters=[{"Name": "modification-state", "Values": ["completed"]}])
    assert untouched not in ids()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_volumes_modifications(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert error_code(e.value) == "InvalidParameterValue"
    # Another account sees neither the volume nor its modification.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2(bob).describe_volumes_modifications(VolumeIds=[vid])
    assert error_code(e.value) == "InvalidVolume.NotFound"
    # The record survives in the catalog: the AWS CLI reads the same.
    out = aws(alice, "ec2", "describe-volumes-modifications", "--volume-ids", vid)
    assert out["VolumesModifications"][0]["TargetThroughput"] == 250


def test_volume_status_and_attributes(alice, bob, ec2, aws):
    c = ec2(alice)
    vid = make_volume(c, 1)["VolumeId"]
    c.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
    [s] = c.describe_volume_status(VolumeIds=[vid])["VolumeStatuses"]
    assert s["VolumeStatus"]["Status"] == "ok" and s["AvailabilityZone"] == "us-east-1a"
    assert {"Name": "io-enabled", "Status": "passed"} in s["VolumeStatus"]["Details"]
    assert s["Events"] == [] and s["Actions"] == []
    ok = lambda status: {v["VolumeId"] for v in c.describe_volume_status(
        Filters=[{"Name": "volume-status.status", "Values": [status]}])["VolumeStatuses"]}
    assert vid in ok("ok") and vid not in ok("impaired")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2(bob).describe_volume_status(VolumeIds=[vid])
    assert error_code(e.value) == "InvalidVolume.NotFound"

    assert c.describe_volume_attribute(VolumeId=vid, Attribute="autoEnableIO")["AutoEnableIO"] == {"Value": False}
    c.modify_volume_attribute(VolumeId=vid, AutoEnableIO={"Value": True})
    got = aws(alice, "ec2", "describe-volume-attribute", "--volume-id", vid, "--attribute", "autoEnableIO")
    assert got["AutoEnableIO"] == {"Value": True} and got["VolumeId"] == vid
    assert c.describe_volume_attribute(VolumeId=vid, Attribute="productCodes")["ProductCodes"] == []
    for call, code in ((lambda: c.describe_volume_attribute(VolumeId=vid, Attribute="size"), "InvalidParameterValue"),
                       (lambda: c.modify_volume_attribute(VolumeId=vid), "MissingParameter"),
                       (lambda: ec2(bob).modify_volume_attribute(VolumeId=vid, AutoEnableIO={"Value": False}),
                        "InvalidVolume.NotFound")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == code
    assert c.describe_volume_attribute(VolumeId=vid, Attribute="autoEnableIO")["AutoEnableIO"] == {"Value": True}


def test_client_token_is_idempotent(alice, ec2):
    c = ec2(alice)
    a = make_volume(c, 1, ClientToken="tok-123")
    b = make_volume(c, 1, ClientToken="tok-123")
    assert a["VolumeId"] == b["VolumeId"]


def test_other_accounts_volumes_are_invisible(alice, bob, ec2):
    vid = make_volume(ec2(alice), 1)["VolumeId"]
    b = ec2(bob)
    assert vid not in {v["VolumeId"] for v in b.describe_volumes()["Volumes"]}
    for call in (lambda: b.describe_volumes(VolumeIds=[vid]), lambda: b.delete_volume(VolumeId=vid),
                 lambda: b.create_snapshot(VolumeId=vid)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "InvalidVolume.NotFound"
        assert alice["AccountId"] not in str(e.value)
    # And regions are separate too.
    assert vid not in {v["VolumeId"] for v in ec2(alice, region="eu-west-1").describe_volumes()["Volumes"]}


def test_aws_cli_volume_lifecycle(alice, aws):
    v = aws(alice, "ec2", "create-volume", "--size", "1", "--availability-zone", "us-east-1c")
    vid = v["VolumeId"]
    aws(alice, "ec2", "wait", "volume-available", "--volume-ids", vid)
    listed = aws(alice, "ec2", "describe-volumes", "--volume-ids", vid)
    assert listed["Volumes"][0]["Size"] == 1
    assert aws(alice, "ec2", "describe-volumes", "--query", "length(Volumes)") >= 1
    aws(alice, "ec2", "delete-volume", "--volume-id", vid)
    out = aws(alice, "ec2", "describe-volumes", "--volume-ids", vid, check=False)
    assert out.returncode != 0 and "InvalidVolume.NotFound" in out.stderr

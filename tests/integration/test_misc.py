"""Regions, availability zones and tags."""

import botocore.exceptions
import pytest

from conftest import error_code


def test_regions_and_zones(alice, ec2, aws):
    c = ec2(alice)
    names = {r["RegionName"] for r in c.describe_regions()["Regions"]}
    assert {"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-2"} <= names
    only = c.describe_regions(RegionNames=["eu-west-1"])["Regions"]
    assert [r["RegionName"] for r in only] == ["eu-west-1"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_regions(RegionNames=["mars-1"])
    assert error_code(e.value) == "InvalidParameterValue"
    zones = ec2(alice, region="us-west-2").describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert all(z["State"] == "available" and z["RegionName"] == "us-west-2" for z in zones)
    picked = c.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": ["*b"]}])["AvailabilityZones"]
    assert [z["ZoneName"] for z in picked] == ["us-east-1b"]
    cli = aws(alice, "ec2", "describe-availability-zones", region="ap-northeast-2")
    assert cli["AvailabilityZones"][0]["ZoneName"] == "ap-northeast-2a"


def test_tags_create_describe_delete(alice, bob, ec2):
    c = ec2(alice)
    vid = c.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    c.create_tags(Resources=[vid], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "ops"}])
    tags = c.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"]
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in tags} == {("env", "prod", "volume"), ("owner", "ops", "volume")}
    c.create_tags(Resources=[vid], Tags=[{"Key": "env", "Value": "dev"}])
    assert c.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Tags"] == [{"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "ops"}]
    c.delete_tags(Resources=[vid], Tags=[{"Key": "env", "Value": "wrong"}])
    assert len(c.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"]) == 2
    c.delete_tags(Resources=[vid], Tags=[{"Key": "env"}])
    assert [t["Key"] for t in c.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"]] == ["owner"]
    # Bob can neither tag nor see alice's tags.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2(bob).create_tags(Resources=[vid], Tags=[{"Key": "x", "Value": "y"}])
    assert error_code(e.value) == "InvalidVolume.NotFound"
    assert vid not in {t["ResourceId"] for t in ec2(bob).describe_tags()["Tags"]}
    for bad in [{"Key": "aws:reserved", "Value": "v"}, {"Key": "", "Value": "v"}, {"Key": "k" * 129, "Value": "v"}]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.create_tags(Resources=[vid], Tags=[bad])
        assert error_code(e.value) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_tags(Resources=[vid], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(60)])
    assert error_code(e.value) == "TagLimitExceeded"

"""Regions, availability zones, instance type offerings, account attributes and tags."""

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


def test_instance_type_offerings(alice, ec2, aws):
    c = ec2(alice)
    types = {t["InstanceType"] for t in c.get_paginator("describe_instance_types").paginate().build_full_result()["InstanceTypes"]}
    offered = c.get_paginator("describe_instance_type_offerings").paginate(
        PaginationConfig={"PageSize": 7}).build_full_result()["InstanceTypeOfferings"]
    # Every type openami launches, once, in the caller's region.
    assert sorted(o["InstanceType"] for o in offered) == sorted(types)
    assert {(o["LocationType"], o["Location"]) for o in offered} == {("region", "us-east-1")}
    zones = c.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.micro"]}])
    assert sorted(o["Location"] for o in zones["InstanceTypeOfferings"]) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    ids = ec2(alice, region="eu-west-1").describe_instance_type_offerings(
        LocationType="availability-zone-id", Filters=[{"Name": "location", "Values": ["euw1-az2"]},
                                                      {"Name": "instance-type", "Values": ["t3.*"]}])
    got = ids["InstanceTypeOfferings"]
    assert got and all(o["Location"] == "euw1-az2" and o["InstanceType"].startswith("t3.") for o in got)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_instance_type_offerings(LocationType="planet")
    assert error_code(e.value) == "InvalidParameterValue"
    cli = aws(alice, "ec2", "describe-instance-type-offerings", "--filters", "Name=instance-type,Values=t3.micro")
    assert cli["InstanceTypeOfferings"] == [{"InstanceType": "t3.micro", "LocationType": "region", "Location": "us-east-1"}]


def test_account_attributes_and_ebs_encryption_default(alice, bob, ec2, aws):
    c = ec2(alice)
    attrs = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
             for a in c.describe_account_attributes()["AccountAttributes"]}
    default_vpc = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    assert attrs["supported-platforms"] == ["VPC"]
    assert attrs["default-vpc"] == [default_vpc]
    assert int(attrs["max-instances"][0]) >= 1
    assert attrs["vpc-max-security-groups-per-interface"] == ["5"]
    assert attrs["max-elastic-ips"] == attrs["vpc-max-elastic-ips"] == ["5"]
    # Each account and region has its own default VPC.
    other = ec2(bob).describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
    assert [a["AttributeName"] for a in other] == ["default-vpc"]
    assert other[0]["AttributeValues"][0]["AttributeValue"] not in ("none", default_vpc)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_account_attributes(AttributeNames=["max-moons"])
    assert error_code(e.value) == "InvalidParameterValue"
    cli = aws(alice, "ec2", "describe-account-attributes", "--attribute-names", "supported-platforms")
    assert cli["AccountAttributes"][0]["AttributeValues"] == [{"AttributeValue": "VPC"}]
    # Volumes are not encrypted at rest here, so encryption by default is off, truthfully.
    assert c.get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False


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

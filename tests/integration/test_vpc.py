"""The VPC layer through boto3 and the AWS CLI: the default VPC (created once, on first
use, even under concurrent first calls), VPCs and subnets with their conflicts and
dependencies, route tables, security groups and their rules, tags, filters, account
isolation and DryRun."""

import json
import sqlite3
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code


def fresh(server, ec2, region="us-east-1"):
    creds = server.create_account("vpc-" + uuid.uuid4().hex[:8])
    return creds, ec2(creds, region=region)


def err(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return error_code(e.value), e.value.response["Error"]["Message"]


def default_vpc(c):
    vpcs = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1
    # Terraform's `data "aws_vpc" { default = true }` sends the filter as `isDefault`.
    assert c.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"] == vpcs
    return vpcs[0]


def test_default_vpc_created_once_on_first_use(server, ec2):
    creds, c = fresh(server, ec2)
    vpcs = c.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1
    v = vpcs[0]
    assert v["IsDefault"] is True and v["CidrBlock"] == "172.31.0.0/16"
    assert v["State"] == "available" and v["InstanceTenancy"] == "default"
    assert v["DhcpOptionsId"].startswith("dopt-") and v["OwnerId"] == creds["AccountId"]
    assert v["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
    assert c.describe_vpcs()["Vpcs"] == vpcs, "a second call creates nothing"

    subnets = sorted(c.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
    assert [s["AvailabilityZone"] for s in subnets] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert [s["CidrBlock"] for s in subnets] == ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]
    for s in subnets:
        assert s["VpcId"] == v["VpcId"] and s["DefaultForAz"] and s["MapPublicIpOnLaunch"]
        assert s["AvailableIpAddressCount"] == 4091 and s["State"] == "available"
        assert s["AvailabilityZoneId"].startswith("use1-az")
        assert s["SubnetArn"].endswith(":subnet/" + s["SubnetId"])

    tables = c.describe_route_tables()["RouteTables"]
    assert len(tables) == 1 and tables[0]["VpcId"] == v["VpcId"]
    assert tables[0]["Associations"][0]["Main"] is True
    assert tables[0]["Routes"] == [{"DestinationCidrBlock": "172.31.0.0/16", "GatewayId": "local",
                                     "State": "active", "Origin": "CreateRouteTable"}]

    groups = c.describe_security_groups()["SecurityGroups"]
    assert len(groups) == 1
    g = groups[0]
    assert g["GroupName"] == "default" and g["Description"] == "default VPC security group"
    assert g["VpcId"] == v["VpcId"] and g["OwnerId"] == creds["AccountId"]
    assert g["IpPermissions"] == [{"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                                   "UserIdGroupPairs": [{"GroupId": g["GroupId"], "UserId": creds["AccountId"]}]}]
    assert g["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    rules = c.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [g["GroupId"]]}])
    assert len(rules["SecurityGroupRules"]) == 2
    assert all(r["SecurityGroupRuleId"].startswith("sgr-") for r in rules["SecurityGroupRules"])
    # Other regions have their own default VPC.
    west = ec2(creds, region="us-west-2")
    assert default_vpc(west)["VpcId"] != v["VpcId"]
    assert {s["AvailabilityZone"] for s in west.describe_subnets()["Subnets"]} == {
        "us-west-2a", "us-west-2b", "us-west-2c"}


def test_concurrent_first_calls_make_one_default_vpc(server, ec2):
    creds, _ = fresh(server, ec2)
    clients = [ec2(creds) for _ in range(8)]
    errors = []
    calls = [lambda c: c.describe_vpcs(), lambda c: c.describe_subnets(),
             lambda c: c.describe_security_groups(), lambda c: c.describe_route_tables()]

    def run(i):
        try:
            calls[i % len(calls)](clients[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    c = clients[0]
    assert len(c.describe_vpcs()["Vpcs"]) == 1
    assert len(c.describe_subnets()["Subnets"]) == 3
    assert len(c.describe_security_groups()["SecurityGroups"]) == 1
    assert len(c.describe_route_tables()["RouteTables"]) == 1


def test_create_and_delete_vpc_and_subnets(server, ec2):
    _, c = fresh(server, ec2)
    vpc = c.create_vpc(CidrBlock="10.20.0.0/16",
                       TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "lab"}]}])["Vpc"]
    vid = vpc["VpcId"]
    assert vpc["IsDefault"] is False and {"Key": "Name", "Value": "lab"} in vpc["Tags"]
    c.get_waiter("vpc_available").wait(VpcIds=[vid], WaiterConfig=FAST_WAITER)
    assert c.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"] is True
    assert c.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is False
    c.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    assert c.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is True
    assert err(c.describe_vpc_attribute, VpcId=vid, Attribute="nope")[0] == "InvalidParameterValue"
    # Its main route table and default group come with it.
    rtb = c.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
    assert len(rtb) == 1 and rtb[0]["Routes"][0]["DestinationCidrBlock"] == "10.20.0.0/16"
    sgs = c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"]
    assert [g["GroupName"] for g in sgs] == ["default"]

    assert err(c.create_vpc, CidrBlock="10.0.0.0/8")[0] == "InvalidVpc.Range"
    assert err(c.create_vpc, CidrBlock="10.0.0.0/29")[0] == "InvalidVpc.Range"
    assert err(c.create_vpc, CidrBlock="not-a-cidr")[0] == "InvalidParameterValue"

    s1 = c.create_subnet(VpcId=vid, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    c.get_waiter("subnet_available").wait(SubnetIds=[s1["SubnetId"]], WaiterConfig=FAST_WAITER)
    assert s1["AvailableIpAddressCount"] == 251 and s1["DefaultForAz"] is False
    assert s1["AvailabilityZone"] == "us-east-1b" and s1["MapPublicIpOnLaunch"] is False
    s2 = c.create_subnet(VpcId=vid, CidrBlock="10.20.2.0/24", AvailabilityZoneId="use1-az3")["Subnet"]
    assert s2["AvailabilityZone"] == "us-east-1c"
    assert err(c.create_subnet, VpcId=vid, CidrBlock="10.20.1.128/25")[0] == "InvalidSubnet.Conflict"
    assert err(c.create_subnet, VpcId=vid, CidrBlock="10.20.0.0/22")[0] == "InvalidSubnet.Conflict"
    assert err(c.create_subnet, VpcId=vid, CidrBlock="10.21.0.0/24")[0] == "InvalidSubnet.Range"
    assert err(c.create_subnet, VpcId="vpc-0123456789abcdef0", CidrBlock="10.20.9.0/24")[0] == "InvalidVpcID.NotFound"
    assert err(c.create_subnet, VpcId=vid, CidrBlock="10.20.9.0/24", AvailabilityZone="mars-1a")[0] == \
        "InvalidParameterValue"
    got = c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    assert {s["SubnetId"] for s in got} == {s1["SubnetId"], s2["SubnetId"]}

    sg = c.create_security_group(GroupName="app", Description="app tier", VpcId=vid)["GroupId"]
    code, msg = err(c.delete_vpc, VpcId=vid)
    assert code == "DependencyViolation" and vid in msg
    c.delete_subnet(SubnetId=s1["SubnetId"])
    c.delete_subnet(SubnetId=s2["SubnetId"])
    assert err(c.delete_subnet, SubnetId=s1["SubnetId"])[0] == "InvalidSubnetID.NotFound"
    assert err(c.delete_vpc, VpcId=vid)[0] == "DependencyViolation", "the non-default group remains"
    c.delete_security_group(GroupId=sg)
    c.delete_vpc(VpcId=vid)
    assert err(c.describe_vpcs, VpcIds=[vid])[0] == "InvalidVpcID.NotFound"
    assert c.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"] == []
    assert c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"] == []
    assert err(c.describe_vpcs, VpcIds=["vpc-xyz"])[0] == "InvalidVpcID.Malformed"


def test_default_vpc_can_be_deleted_and_recreated(server, ec2):
    _, c = fresh(server, ec2)
    vid = default_vpc(c)["VpcId"]
    assert err(c.delete_vpc, VpcId=vid)[0] == "DependencyViolation"
    for s in c.describe_subnets()["Subnets"]:
        c.delete_subnet(SubnetId=s["SubnetId"])
    c.delete_vpc(VpcId=vid)
    assert c.describe_vpcs()["Vpcs"] == [], "a deleted default VPC does not come back by itself"
    assert err(c.create_security_group, GroupName="x", Description="x")[0] == "VPCIdNotSpecified"
    new = c.create_default_vpc()["Vpc"]
    assert new["IsDefault"] is True and new["VpcId"] != vid
    assert len(c.describe_subnets()["Subnets"]) == 3
    assert err(c.create_default_vpc)[0] == "DefaultVpcAlreadyExists"


def test_security_group_lifecycle_and_rules(server, ec2, aws):
    creds, c = fresh(server, ec2)
    vid = default_vpc(c)["VpcId"]
    made = c.create_security_group(
        GroupName="web", Description="web servers",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "tier", "Value": "front"}]}])
    gid = made["GroupId"]
    assert gid.startswith("sg-") and made["SecurityGroupArn"].endswith(":security-group/" + gid)
    c.get_waiter("security_group_exists").wait(GroupIds=[gid], WaiterConfig=FAST_WAITER)
    g = c.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert g["VpcId"] == vid and g["IpPermissions"] == []
    assert g["IpPermissionsEgress"][0]["IpProtocol"] == "-1"
    assert {"Key": "tier", "Value": "front"} in g["Tags"]
    assert err(c.create_security_group, GroupName="web", Description="again")[0] == "InvalidGroup.Duplicate"
    assert err(c.create_security_group, GroupName="sg-nope", Description="x")[0] == "InvalidParameterValue"
    assert c.describe_security_groups(GroupNames=["web"])["SecurityGroups"][0]["GroupId"] == gid

    # IpPermissions form, with protocol numbers normalised.
    out = c.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "6", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}, {"CidrIp": "10.0.0.0/8"}]},
    ])
    assert out["Return"] is True and len(out["SecurityGroupRules"]) == 2
    r = out["SecurityGroupRules"][0]
    assert r["IpProtocol"] == "tcp" and r["FromPort"] == 80 and r["IsEgress"] is False
    assert r["CidrIpv4"] == "0.0.0.0/0" and r["Description"] == "http" and r["GroupId"] == gid
    # AWS CLI shorthand (the legacy flat parameters).
    aws(creds, "ec2", "authorize-security-group-ingress", "--group-id", gid,
        "--protocol", "tcp", "--port", "22", "--cidr", "0.0.0.0/0")
    # Legacy flat form by group name (default VPC) through boto3.
    c.authorize_security_group_ingress(GroupName="web", IpProtocol="udp", FromPort=53, ToPort=53,
                                       CidrIp="192.168.0.0/16")
    g = c.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    perms = {(p["IpProtocol"], p.get("FromPort")): p for p in g["IpPermissions"]}
    assert set(perms) == {("tcp", 80), ("tcp", 22), ("udp", 53)}
    assert [x["CidrIp"] for x in perms[("tcp", 80)]["IpRanges"]] == ["0.0.0.0/0", "10.0.0.0/8"]
    assert perms[("tcp", 80)]["IpRanges"][0]["Description"] == "http"

    code, _ = err(c.authorize_security_group_ingress, GroupId=gid, IpProtocol="tcp", FromPort=22,
                  ToPort=22, CidrIp="0.0.0.0/0")
    assert code == "InvalidPermission.Duplicate"
    assert err(c.authorize_security_group_ingress, GroupId=gid, IpProtocol="banana", FromPort=1,
               ToPort=2, CidrIp="0.0.0.0/0")[0] == "InvalidParameterValue"
    assert err(c.authorize_security_group_ingress, GroupId=gid, IpProtocol="tcp", FromPort=10,
               ToPort=5, CidrIp="0.0.0.0/0")[0] == "InvalidParameterValue"
    assert err(c.authorize_security_group_ingress, GroupId=gid, IpProtocol="tcp", FromPort=1,
               ToPort=2, CidrIp="10.0.0.1/8")[0] == "InvalidParameterValue"
    assert err(c.authorize_security_group_ingress, GroupId="sg-0123456789abcdef0", IpProtocol="tcp",
               FromPort=1, ToPort=2, CidrIp="0.0.0.0/0")[0] == "InvalidGroup.NotFound"
    assert err(c.authorize_security_group_ingress, GroupId="sg-bad!", IpProtocol="tcp",
               FromPort=1, ToPort=2, CidrIp="0.0.0.0/0")[0] == "InvalidGroupId.Malformed"

    # Egress.
    c.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}])
    eg = c.describe_security_groups(
        Filters=[{"Name": "egress.ip-permission.cidr", "Values": ["10.1.0.0/16"]}])["SecurityGroups"]
    assert [x["GroupId"] for x in eg] == [gid]
    c.revoke_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}])

    # Revoke: by permission, by rule id, and a rule that does not exist.
    out = c.revoke_security_group_ingress(GroupId=gid, IpProtocol="udp", FromPort=53, ToPort=53,
                                          CidrIp="192.168.0.0/16")
    assert out["Return"] is True
    code, _ = err(c.revoke_security_group_ingress, GroupId=gid, IpProtocol="udp", FromPort=53,
                  ToPort=53, CidrIp="192.168.0.0/16")
    assert code == "InvalidPermission.NotFound"
    rules = c.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"]
    ssh = [x for x in rules if x.get("FromPort") == 22 and not x["IsEgress"]]
    assert len(ssh) == 1
    one = c.describe_security_group_rules(SecurityGroupRuleIds=[ssh[0]["SecurityGroupRuleId"]])
    assert one["SecurityGroupRules"][0]["CidrIpv4"] == "0.0.0.0/0"
    c.revoke_security_group_ingress(GroupId=gid, SecurityGroupRuleIds=[ssh[0]["SecurityGroupRuleId"]])
    assert err(c.describe_security_group_rules,
               SecurityGroupRuleIds=[ssh[0]["SecurityGroupRuleId"]])[0] == "InvalidSecurityGroupRuleId.NotFound"

    # ModifySecurityGroupRules keeps the id, changes the definition.
    http = [x for x in c.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"]
        if x.get("CidrIpv4") == "10.0.0.0/8"][0]
    c.modify_security_group_rules(GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": http["SecurityGroupRuleId"],
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                              "CidrIpv4": "10.0.0.0/8", "Description": "alt"}}])
    after = c.describe_security_group_rules(SecurityGroupRuleIds=[http["SecurityGroupRuleId"]])
    assert after["SecurityGroupRules"][0]["FromPort"] == 8080
    assert after["SecurityGroupRules"][0]["Description"] == "alt"
    code, _ = err(c.modify_security_group_rules, GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": http["SecurityGroupRuleId"],
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIpv4": "0.0.0.0/0"}}])
    assert code == "InvalidPermission.Duplicate"
    assert err(c.modify_security_group_rules, GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": "sgr-0123456789abcdef0",
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
                              "CidrIpv4": "0.0.0.0/0"}}])[0] == "InvalidSecurityGroupRuleId.NotFound"

    # Filters.
    by = lambda name, value: [x["GroupId"] for x in c.describe_security_groups(
        Filters=[{"Name": name, "Values": [value]}])["SecurityGroups"]]
    assert by("group-name", "web") == [gid]
    assert by("description", "web*") == [gid]
    assert by("tag:tier", "front") == [gid]
    assert by("ip-permission.from-port", "8080") == [gid]
    assert by("ip-permission.protocol", "tcp") == [gid]
    assert by("owner-id", creds["AccountId"]) != []
    page = c.describe_security_groups(MaxResults=5)
    assert "NextToken" not in page and len(page["SecurityGroups"]) == 2

    c.delete_security_group(GroupId=gid)
    assert err(c.describe_security_groups, GroupIds=[gid])[0] == "InvalidGroup.NotFound"
    code, msg = err(c.delete_security_group, GroupId=gid)
    assert code == "InvalidGroup.NotFound" and gid in msg
    default = c.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    assert err(c.delete_security_group, GroupId=default)[0] == "CannotDelete"


def test_group_referenced_by_another_group(server, ec2):
    creds, c = fresh(server, ec2)
    lb = c.create_security_group(GroupName="lb", Description="load balancers")["GroupId"]
    app = c.create_security_group(GroupName="app", Description="app servers")["GroupId"]
    c.authorize_security_group_ingress(GroupId=app, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "UserIdGroupPairs": [{"GroupId": lb, "Description": "from lb"}]}])
    g = c.describe_security_groups(GroupIds=[app])["SecurityGroups"][0]
    assert g["IpPermissions"][0]["UserIdGroupPairs"] == [
        {"GroupId": lb, "UserId": creds["AccountId"], "Description": "from lb"}]
    rules = c.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [app]}])["SecurityGroupRules"]
    ref = [r for r in rules if not r["IsEgress"]][0]
    assert ref["ReferencedGroupInfo"]["GroupId"] == lb
    assert c.describe_security_groups(
        Filters=[{"Name": "ip-permission.group-id", "Values": [lb]}])["SecurityGroups"][0]["GroupId"] == app
    code, _ = err(c.delete_security_group, GroupId=lb)
    assert code == "DependencyViolation"
    # Legacy SourceSecurityGroupName form: all traffic from the named group.
    c.authorize_security_group_ingress(GroupName="lb", SourceSecurityGroupName="app")
    c.revoke_security_group_ingress(GroupName="lb", SourceSecurityGroupName="app")
    c.revoke_security_group_ingress(GroupId=app, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": lb}]}])
    c.delete_security_group(GroupId=lb)
    c.delete_security_group(GroupName="app")


def test_tags_on_vpc_resources(server, ec2):
    _, c = fresh(server, ec2)
    vpc = default_vpc(c)["VpcId"]
    subnet = c.describe_subnets()["Subnets"][0]["SubnetId"]
    sg = c.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    rtb = c.describe_route_tables()["RouteTables"][0]["RouteTableId"]
    c.create_tags(Resources=[vpc, subnet, sg, rtb], Tags=[{"Key": "env", "Value": "test"}])
    tagged = c.describe_tags(Filters=[{"Name": "key", "Values": ["env"]}])["Tags"]
    assert {(t["ResourceId"], t["ResourceType"]) for t in tagged} == {
        (vpc, "vpc"), (subnet, "subnet"), (sg, "security-group"), (rtb, "route-table")}
    assert [v["VpcId"] for v in c.describe_vpcs(Filters=[{"Name": "tag:env", "Values": ["test"]}])["Vpcs"]] == [vpc]
    assert [s["SubnetId"] for s in c.describe_subnets(
        Filters=[{"Name": "tag:env", "Values": ["test"]}])["Subnets"]] == [subnet]
    assert c.describe_route_tables(Filters=[{"Name": "tag-key", "Values": ["env"]}])["RouteTables"][0][
        "RouteTableId"] == rtb
    c.delete_tags(Resources=[subnet], Tags=[{"Key": "env"}])
    assert c.describe_subnets(Filters=[{"Name": "tag:env", "Values": ["test"]}])["Subnets"] == []
    assert err(c.create_tags, Resources=["vpc-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])[0] == \
        "InvalidVpcID.NotFound"
    assert err(c.create_tags, Resources=["eni-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])[0] == \
        "InvalidNetworkInterfaceID.NotFound"
    assert err(c.create_vpc, CidrBlock="10.0.0.0/16",
               TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "a", "Value": "b"}]}])[0] == \
        "InvalidParameterValue"


def test_subnet_and_vpc_filters(server, ec2):
    _, c = fresh(server, ec2)
    vpc = default_vpc(c)["VpcId"]
    names = lambda resp: sorted(s["AvailabilityZone"] for s in resp["Subnets"])
    assert names(c.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])) == \
        ["us-east-1b"]
    assert names(c.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                             {"Name": "vpc-id", "Values": [vpc]}])) == \
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert names(c.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["172.31.32.0/20"]}])) == \
        ["us-east-1c"]
    page = c.describe_subnets(MaxResults=5)
    assert len(page["Subnets"]) == 3
    assert c.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["172.31.0.0/16"]}])["Vpcs"][0]["VpcId"] == vpc
    assert err(c.describe_subnets, Filters=[{"Name": "bogus", "Values": ["x"]}])[0] == "InvalidParameterValue"
    assert err(c.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"])[0] == "InvalidSubnetID.NotFound"
    assert c.describe_network_interfaces()["NetworkInterfaces"] == []
    assert err(c.describe_network_interfaces,
               NetworkInterfaceIds=["eni-0123456789abcdef0"])[0] == "InvalidNetworkInterfaceID.NotFound"


def test_account_isolation(server, ec2, alice, bob):
    a, b = ec2(alice), ec2(bob)
    gid = a.create_security_group(GroupName="private-" + uuid.uuid4().hex[:6], Description="alice only")["GroupId"]
    avpc = default_vpc(a)["VpcId"]
    bvpc = default_vpc(b)["VpcId"]
    assert avpc != bvpc
    assert gid not in [g["GroupId"] for g in b.describe_security_groups()["SecurityGroups"]]
    assert err(b.describe_security_groups, GroupIds=[gid])[0] == "InvalidGroup.NotFound"
    assert err(b.authorize_security_group_ingress, GroupId=gid, IpProtocol="tcp", FromPort=22, ToPort=22,
               CidrIp="0.0.0.0/0")[0] == "InvalidGroup.NotFound"
    assert err(b.revoke_security_group_egress, GroupId=gid, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])[0] == "InvalidGroup.NotFound"
    assert err(b.delete_security_group, GroupId=gid)[0] == "InvalidGroup.NotFound"
    assert err(b.create_tags, Resources=[gid], Tags=[{"Key": "a", "Value": "b"}])[0] == "InvalidGroup.NotFound"
    assert err(b.describe_vpcs, VpcIds=[avpc])[0] == "InvalidVpcID.NotFound"
    assert err(b.delete_vpc, VpcId=avpc)[0] == "InvalidVpcID.NotFound"
    assert err(b.create_subnet, VpcId=avpc, CidrBlock="172.31.48.0/20")[0] == "InvalidVpcID.NotFound"
    assert err(b.create_security_group, GroupName="x", Description="x", VpcId=avpc)[0] == "InvalidVpcID.NotFound"
    # Bob's group may not reference Alice's.
    bg = b.create_security_group(GroupName="bob-" + uuid.uuid4().hex[:6], Description="bob")["GroupId"]
    assert err(b.authorize_security_group_ingress, GroupId=bg, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]}])[0] == "InvalidGroup.NotFound"
    asub = a.describe_subnets()["Subnets"][0]["SubnetId"]
    assert err(b.delete_subnet, SubnetId=asub)[0] == "InvalidSubnetID.NotFound"
    a.delete_security_group(GroupId=gid)
    b.delete_security_group(GroupId=bg)


def test_dry_run(server, ec2):
    _, c = fresh(server, ec2)
    for call, kw in [
        (c.create_vpc, {"CidrBlock": "10.9.0.0/16"}),
        (c.create_security_group, {"GroupName": "dry", "Description": "dry"}),
        (c.describe_vpcs, {}),
        (c.describe_security_groups, {}),
    ]:
        assert err(call, DryRun=True, **kw)[0] == "DryRunOperation"
    assert [v["CidrBlock"] for v in c.describe_vpcs()["Vpcs"]] == ["172.31.0.0/16"]
    assert [g["GroupName"] for g in c.describe_security_groups()["SecurityGroups"]] == ["default"]


def test_cli_describe(server, ec2, aws):
    creds, _ = fresh(server, ec2)
    out = aws(creds, "ec2", "describe-vpcs")
    assert out["Vpcs"][0]["IsDefault"] is True
    gid = aws(creds, "ec2", "create-security-group", "--group-name", "cli", "--description", "from the cli")["GroupId"]
    aws(creds, "ec2", "authorize-security-group-ingress", "--group-id", gid,
        "--ip-permissions", "IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{CidrIp=10.0.0.0/8}]")
    got = aws(creds, "ec2", "describe-security-groups", "--group-ids", gid)["SecurityGroups"][0]
    assert got["IpPermissions"][0]["FromPort"] == 443
    failed = aws(creds, "ec2", "authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp",
                 "--port", "443", "--cidr", "10.0.0.0/8", check=False)
    assert failed.returncode != 0 and "InvalidPermission.Duplicate" in failed.stderr
    aws(creds, "ec2", "delete-security-group", "--group-id", gid)


def test_security_group_pagination(server, ec2):
    _, c = fresh(server, ec2)
    made = {c.create_security_group(GroupName=f"g{i}", Description="paged")["GroupId"] for i in range(7)}
    first = c.describe_security_groups(MaxResults=5)
    assert len(first["SecurityGroups"]) == 5 and "NextToken" in first
    seen = [g["GroupId"] for page in c.get_paginator("describe_security_groups").paginate(
        PaginationConfig={"PageSize": 5}) for g in page["SecurityGroups"]]
    assert len(seen) == len(set(seen)) == 8 and made <= set(seen)
    rules = [r["SecurityGroupRuleId"] for page in c.get_paginator("describe_security_group_rules").paginate(
        PaginationConfig={"PageSize": 5}) for r in page["SecurityGroupRules"]]
    assert len(rules) == len(set(rules)) == 9, "one egress rule per new group, two in the default group"
    assert err(c.describe_security_groups, GroupIds=list(made)[:1], MaxResults=5)[0] == \
        "InvalidParameterCombination"
    by_type = c.describe_tags(Filters=[{"Name": "resource-type", "Values": ["security-group"]}])["Tags"]
    assert by_type == []


def test_network_interfaces_of_instances(server, ec2, aws):
    """An instance's primary interface as DescribeNetworkInterfaces shows it. The instance
    row is written into the catalog as the instance layer records one (a VPC placement
    and an `InstanceNetwork`), so this test does not need to boot a machine."""
    creds, c = fresh(server, ec2)
    subnet = c.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}])["Subnets"][0]
    web = c.create_security_group(GroupName="web", Description="web")["GroupId"]
    iid, eni = "i-0" + uuid.uuid4().hex[:16], "eni-0" + uuid.uuid4().hex[:16]
    doc = {"availability_zone": "us-east-1a", "private_ip": "172.31.0.10",
           "launch_time_ms": int(time.time() * 1000),
           "network": {"vpc_id": subnet["VpcId"], "subnet_id": subnet["SubnetId"],
                       "subnet_cidr": subnet["CidrBlock"], "interface_id": eni,
                       "attachment_id": "eni-attach-0" + uuid.uuid4().hex[:16],
                       "mac": "02:ab:cd:ef:01:23", "public_ip": "127.0.0.77",
                       "groups": [{"id": web, "name": "web"}], "source_dest_check": True}}
    db = sqlite3.connect(server.data_dir / "catalog.db", timeout=30)
    with db:
        db.execute("INSERT INTO resources (id, kind, account_id, region, state, doc, created_at_ms) "
                   "VALUES (?, 'instance', ?, 'us-east-1', 'running', ?, ?)",
                   (iid, creds["AccountId"], json.dumps(doc), doc["launch_time_ms"]))
    try:
        got = c.describe_network_interfaces()["NetworkInterfaces"]
        assert len(got) == 1
        n = got[0]
        assert n["NetworkInterfaceId"] == eni and n["SubnetId"] == subnet["SubnetId"]
        assert n["VpcId"] == subnet["VpcId"] and n["AvailabilityZone"] == "us-east-1a"
        assert n["Status"] == "in-use" and n["InterfaceType"] == "interface"
        assert n["MacAddress"] == "02:ab:cd:ef:01:23" and n["PrivateIpAddress"] == "172.31.0.10"
        assert n["PrivateDnsName"] == "ip-172-31-0-10.ec2.internal"
        assert n["Groups"] == [{"GroupName": "web", "GroupId": web}]
        assert n["OwnerId"] == creds["AccountId"] and n["RequesterManaged"] is False
        a = n["Attachment"]
        assert a["InstanceId"] == iid and a["DeviceIndex"] == 0 and a["Status"] == "attached"
        assert a["DeleteOnTermination"] is True and a["InstanceOwnerId"] == creds["AccountId"]
        assert n["Association"] == {"PublicIp": "127.0.0.77", "IpOwnerId": "amazon",
                                    "PublicDnsName": "ec2-127-0-0-77.compute-1.amazonaws.com"}
        assert n["PrivateIpAddresses"][0]["Primary"] is True
        for name, value in [("attachment.instance-id", iid), ("group-id", web), ("mac-address", n["MacAddress"]),
                            ("private-ip-address", "172.31.0.10"), ("subnet-id", subnet["SubnetId"])]:
            hits = c.describe_network_interfaces(Filters=[{"Name": name, "Values": [value]}])["NetworkInterfaces"]
            assert [h["NetworkInterfaceId"] for h in hits] == [eni], name
        assert c.describe_network_interfaces(
            Filters=[{"Name": "vpc-id", "Values": ["vpc-00000000"]}])["NetworkInterfaces"] == []
        cli = aws(creds, "ec2", "describe-network-interfaces", "--network-interface-ids", eni)
        assert cli["NetworkInterfaces"][0]["Attachment"]["InstanceId"] == iid

        c.create_tags(Resources=[eni], Tags=[{"Key": "role", "Value": "primary"}])
        assert c.describe_network_interfaces(
            Filters=[{"Name": "tag:role", "Values": ["primary"]}])["NetworkInterfaces"][0]["TagSet"] == [
            {"Key": "role", "Value": "primary"}]
        assert {(t["ResourceId"], t["ResourceType"]) for t in c.describe_tags()["Tags"]} == {
            (eni, "network-interface")}

        assert c.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]["AvailableIpAddressCount"] == 4090
        assert err(c.delete_subnet, SubnetId=subnet["SubnetId"])[0] == "DependencyViolation"
        assert err(c.delete_security_group, GroupId=web)[0] == "DependencyViolation"
    finally:
        with db:
            db.execute("UPDATE resources SET state = 'terminated' WHERE id = ?", (iid,))
        db.close()
    assert c.describe_network_interfaces()["NetworkInterfaces"] == []
    assert c.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]["AvailableIpAddressCount"] == 4091
    c.delete_security_group(GroupId=web)


def test_security_groups_per_interface_limit(server, ec2):
    """At most five groups per interface (EC2's default quota, which DescribeAccountAttributes
    reports); the sixth is refused before anything is launched."""
    creds, c = fresh(server, ec2)
    vol = c.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    c.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    snap = c.create_snapshot(VolumeId=vol)["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    image = c.register_image(Name="sg-limit", RootDeviceName="/dev/xvda", Architecture="x86_64",
                             BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    groups = [c.create_security_group(GroupName=f"g{i}", Description="limit")["GroupId"] for i in range(6)]
    limit = c.describe_account_attributes(AttributeNames=["vpc-max-security-groups-per-interface"])
    assert limit["AccountAttributes"][0]["AttributeValues"] == [{"AttributeValue": "5"}]
    code, message = err(c.run_instances, ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                        SecurityGroupIds=groups)
    assert code == "SecurityGroupsPerInterfaceLimitExceeded", message
    # By name too (the default VPC takes names).
    code, _ = err(c.run_instances, ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                  SecurityGroupIds=groups[:3], SecurityGroups=["g3", "g4", "g5"])
    assert code == "SecurityGroupsPerInterfaceLimitExceeded"
    assert c.describe_instances()["Reservations"] == []

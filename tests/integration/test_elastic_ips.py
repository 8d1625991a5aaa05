"""Elastic IP addresses through boto3 and the AWS CLI: allocation from the host's loopback
public pool, the per-region quota, tags, filters, refusals; then on real guests: the
address becomes the instance's public address (its web port answers there, and no longer
on the pool address), survives a stop/start, moves to another instance only with
AllowReassociation, and gives way to a new pool address when disassociated.
"""

import ipaddress
import socket
import uuid

import botocore.exceptions
import pytest

from conftest import error_code
from test_instance_network import instance, wait_http
from test_instances import guest_image, guest_raw, launch, needs_qemu, wait_state, wait_until  # noqa: F401


def refused(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return error_code(e.value)


def test_allocate_describe_tag_release_and_refusals(server, ec2, bob, aws):
    creds = server.create_account("eip-" + uuid.uuid4().hex[:6])
    c = ec2(creds)
    a = c.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "front"}]}])
    assert a["AllocationId"].startswith("eipalloc-") and a["Domain"] == "vpc"
    assert ipaddress.ip_address(a["PublicIp"]) in ipaddress.ip_network("127.100.0.0/16")
    assert a["NetworkBorderGroup"] == "us-east-1" and a["PublicIpv4Pool"] == "amazon"
    [got] = c.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"]
    assert got["PublicIp"] == a["PublicIp"] and got["Tags"] == [{"Key": "Name", "Value": "front"}]
    assert "AssociationId" not in got and "InstanceId" not in got
    assert c.describe_addresses(PublicIps=[a["PublicIp"]])["Addresses"][0]["AllocationId"] == a["AllocationId"]
    c.create_tags(Resources=[a["AllocationId"]], Tags=[{"Key": "team", "Value": "web"}])
    tagged = c.describe_addresses(Filters=[{"Name": "tag:team", "Values": ["web"]}])["Addresses"]
    assert [t["AllocationId"] for t in tagged] == [a["AllocationId"]]
    assert c.describe_addresses(Filters=[{"Name": "instance-id", "Values": ["i-0123456789abcdef0"]}])["Addresses"] == []
    # No reverse DNS record is set, so none is reported (Terraform's aws_eip reads this).
    attr = c.describe_addresses_attribute(AllocationIds=[a["AllocationId"]], Attribute="domain-name")
    assert attr["Addresses"] == [{"PublicIp": a["PublicIp"], "AllocationId": a["AllocationId"]}]
    assert refused(c.describe_addresses_attribute, AllocationIds=[a["AllocationId"]],
                   Attribute="colour") == "InvalidParameterValue"

    # Five per region, each a different address, none of them one the pool already gave out.
    more = [c.allocate_address(Domain="vpc") for _ in range(4)]
    ips = {a["PublicIp"]} | {m["PublicIp"] for m in more}
    assert len(ips) == 5
    assert refused(c.allocate_address, Domain="vpc") == "AddressLimitExceeded"
    assert ec2(creds, region="eu-west-1").allocate_address()["PublicIp"] not in ips

    assert refused(c.allocate_address, Domain="standard") == "UnsupportedOperation"
    assert refused(c.describe_addresses, AllocationIds=["eipalloc-0123456789abcdef0"]) == "InvalidAllocationID.NotFound"
    assert refused(c.release_address, AllocationId="eipalloc-nothex") == "InvalidAllocationID.Malformed"
    assert refused(c.associate_address, AllocationId=a["AllocationId"],
                   InstanceId="i-0123456789abcdef0") == "InvalidInstanceID.NotFound"
    assert refused(c.disassociate_address, AssociationId="eipassoc-0123456789abcdef0") == "InvalidAssociationID.NotFound"
    # Another account sees none of it and can release none of it.
    b = ec2(bob)
    assert a["AllocationId"] not in {x["AllocationId"] for x in b.describe_addresses()["Addresses"]}
    assert refused(b.release_address, AllocationId=a["AllocationId"]) == "InvalidAllocationID.NotFound"

    c.release_address(AllocationId=a["AllocationId"])
    for m in more:
        c.release_address(PublicIp=m["PublicIp"]) if m is more[0] else c.release_address(AllocationId=m["AllocationId"])
    cli = aws(creds, "ec2", "describe-addresses")
    assert cli["Addresses"] == []


@needs_qemu
def test_elastic_ip_is_the_public_address_and_moves(ec2, alice, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = client.create_security_group(GroupName="eip-web-" + uuid.uuid4().hex[:6],
                                         Description="web", VpcId=vpc["VpcId"])["GroupId"]
    client.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "127.0.0.0/8"}]}])
    first = launch(client, image, SecurityGroupIds=[group])
    second = None
    eip = client.allocate_address(Domain="vpc")
    try:
        wait_state(client, first, "instance_running")
        pool_ip = instance(client, first)["PublicIpAddress"]
        assert wait_http(pool_ip, first).strip() == first

        assoc = client.associate_address(AllocationId=eip["AllocationId"], InstanceId=first)["AssociationId"]
        assert assoc.startswith("eipassoc-")
        inst = instance(client, first)
        assert inst["PublicIpAddress"] == eip["PublicIp"]
        eni = inst["NetworkInterfaces"][0]
        assert eni["Association"]["PublicIp"] == eip["PublicIp"]
        assert eni["Association"]["IpOwnerId"] == alice["AccountId"]
        [addr] = client.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"]
        assert (addr["InstanceId"], addr["AssociationId"]) == (first, assoc)
        assert addr["PrivateIpAddress"] == inst["PrivateIpAddress"]
        assert addr["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
        assert addr["NetworkInterfaceOwnerId"] == alice["AccountId"]
        enis = client.describe_network_interfaces(
            Filters=[{"Name": "association.allocation-id", "Values": [eip["AllocationId"]]}])["NetworkInterfaces"]
        assert [e["Attachment"]["InstanceId"] for e in enis] == [first]
        # The guest's port now answers on the Elastic IP, and no longer on the pool address.
        assert wait_http(eip["PublicIp"], first).strip() == first
        assert wait_http(pool_ip, None) is None
        assert refused(client.release_address, AllocationId=eip["AllocationId"]) == "InvalidIPAddress.InUse"

        # Kept while stopped, and still the address after the next start.
        client.stop_instances(InstanceIds=[first])
        wait_until(client, first, "stopped")
        assert instance(client, first)["PublicIpAddress"] == eip["PublicIp"]
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((eip["PublicIp"], 80)) != 0
        client.start_instances(InstanceIds=[first])
        wait_state(client, first, "instance_running")
        assert instance(client, first)["PublicIpAddress"] == eip["PublicIp"]
        assert wait_http(eip["PublicIp"], first).strip() == first

        # To another instance: only with AllowReassociation; the first gets a pool address.
        second = launch(client, image, SecurityGroupIds=[group])
        wait_state(client, second, "instance_running")
        assert refused(client.associate_address, AllocationId=eip["AllocationId"],
                       InstanceId=second) == "Resource.AlreadyAssociated"
        moved = client.associate_address(AllocationId=eip["AllocationId"], InstanceId=second,
                                         AllowReassociation=True)["AssociationId"]
        assert moved != assoc
        assert instance(client, second)["PublicIpAddress"] == eip["PublicIp"]
        new_pool = instance(client, first)["PublicIpAddress"]
        assert new_pool and new_pool != eip["PublicIp"]
        assert wait_http(eip["PublicIp"], second).strip() == second
        assert wait_http(new_pool, first).strip() == first

        client.disassociate_address(AssociationId=moved)
        after = instance(client, second)["PublicIpAddress"]
        assert after and after != eip["PublicIp"]
        assert wait_http(after, second).strip() == second
        assert "InstanceId" not in client.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]
    finally:
        ids = [i for i in (first, second) if i]
        client.terminate_instances(InstanceIds=ids)
        for i in ids:
            wait_state(client, i, "instance_terminated")
        client.release_address(AllocationId=eip["AllocationId"])

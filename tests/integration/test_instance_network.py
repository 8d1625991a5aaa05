"""Instances on the network, through boto3 and the AWS CLI only: addresses from the default
VPC's subnet and the loopback public pool, a key pair, security groups opening ports live,
the instance metadata service (IMDSv2 tokens, disabled endpoint), reachability, the
screenshot, and the public address changing across stop/start.

The test guest (tests/guest/init) takes a DHCP lease on eth0, prints it on the console,
reads its instance id from the metadata service (token first) and serves it on port 80.
"""

import base64
import http.client
import ipaddress
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import Server, error_code, openami_bin
from test_instances import (VM_WAITER, console, guest_image, guest_raw, launch,  # noqa: F401
                            needs_qemu, script, upload, wait_state, wait_until)

pytestmark = needs_qemu


def wait_console(client, instance_id, needle, timeout=180):
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        text = console(client, instance_id)
        if needle in text:
            return text
        time.sleep(1)
    raise AssertionError(f"{needle!r} not on the console of {instance_id}:\n{text[-3000:]}")


class NoAnswer(Exception):
    """Connected, but the guest did not answer (yet): still booting."""


def http_get(ip, port=80, timeout=5):
    """The body of GET http://ip:port/; None when the connection is refused (nothing
    listens on the host); NoAnswer when the forward accepted but the guest did not answer."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=timeout) as r:
            return r.read().decode()
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return None
        raise NoAnswer(str(e.reason)) from e
    except ConnectionRefusedError:
        return None
    except (TimeoutError, ConnectionResetError, http.client.RemoteDisconnected) as e:
        raise NoAnswer(repr(e)) from e


def wait_http(ip, want, timeout=90):
    deadline = time.time() + timeout
    got = "never tried"
    while time.time() < deadline:
        try:
            got = http_get(ip)
        except NoAnswer as e:
            got = f"no answer: {e}"
            time.sleep(0.5)
            continue
        if (want is None and got is None) or (want is not None and got is not None and want in got):
            return got
        time.sleep(0.5)
    raise AssertionError(f"GET http://{ip}/ gave {got!r}, wanted {want!r}")


def instance(client, instance_id):
    return client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.fixture(scope="module")
def web_group(ec2, alice):
    client = ec2(alice)
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = client.create_security_group(GroupName="web-" + uuid.uuid4().hex[:6],
                                         Description="ssh and web", VpcId=vpc["VpcId"])["GroupId"]
    return vpc, group


def test_addresses_key_groups_ports_and_metadata(ec2, alice, aws, guest_image, web_group):
    client = ec2(alice)
    image, _ = guest_image
    vpc, group = web_group
    key = client.create_key_pair(KeyName="k-" + uuid.uuid4().hex[:6], KeyType="ed25519")
    iid = launch(client, image, KeyName=key["KeyName"], SecurityGroupIds=[group],
                 Placement={"AvailabilityZone": "us-east-1a"})
    try:
        inst = instance(client, iid)
        subnet = client.describe_subnets(Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": ["us-east-1a"]}])["Subnets"][0]
        assert inst["VpcId"] == vpc["VpcId"]
        assert inst["SubnetId"] == subnet["SubnetId"]
        private = inst["PrivateIpAddress"]
        assert ipaddress.ip_address(private) in ipaddress.ip_network(subnet["CidrBlock"])
        assert inst["PrivateDnsName"] == "ip-" + private.replace(".", "-") + ".ec2.internal"
        public = inst["PublicIpAddress"]
        assert ipaddress.ip_address(public) in ipaddress.ip_network("127.100.0.0/16")
        assert inst["PublicDnsName"] == "ec2-" + public.replace(".", "-") + ".compute-1.amazonaws.com"
        assert inst["KeyName"] == key["KeyName"]
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group]
        eni = inst["NetworkInterfaces"][0]
        assert eni["NetworkInterfaceId"].startswith("eni-")
        assert eni["Association"]["PublicIp"] == public
        assert eni["PrivateIpAddress"] == private
        assert inst["MetadataOptions"]["HttpTokens"] == "optional"
        enis = client.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["NetworkInterfaces"]
        assert [e["MacAddress"] for e in enis] == [eni["MacAddress"]]

        wait_state(client, iid, "instance_running")
        # The private address is the NIC's own (DHCP), and the guest read its id from IMDS.
        wait_console(client, iid, f"openami-guest: eth0 {private}")
        wait_console(client, iid, f"metadata instance-id {iid}")
        client.get_waiter("instance_status_ok").wait(InstanceIds=[iid], WaiterConfig=VM_WAITER)

        # No rule for 80 yet: nothing listens on the public address.
        assert http_get(public) is None
        aws(alice, "ec2", "authorize-security-group-ingress", "--group-id", group,
            "--protocol", "tcp", "--port", "80", "--cidr", "0.0.0.0/0")
        assert wait_http(public, iid).strip() == iid
        client.revoke_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        wait_http(public, None)
        # A rule for a CIDR that does not cover local clients opens nothing.
        client.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
        time.sleep(1)
        assert http_get(public) is None

        png = base64.b64decode(client.get_console_screenshot(InstanceId=iid)["ImageData"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"

        # Stop/start: the private address stays, the public one is new (EC2's rule).
        client.stop_instances(InstanceIds=[iid])
        stopped = wait_until(client, iid, "stopped")
        assert stopped["PrivateIpAddress"] == private
        assert "PublicIpAddress" not in stopped
        client.start_instances(InstanceIds=[iid])
        wait_state(client, iid, "instance_running")
        again = instance(client, iid)
        assert again["PrivateIpAddress"] == private
        assert again["PublicIpAddress"] not in (None, public)
        wait_console(client, iid, f"metadata instance-id {iid}")
    finally:
        client.terminate_instances(InstanceIds=[iid])
    wait_state(client, iid, "instance_terminated")


IMDS_PROBE = r"""
req() { printf "$1 $2 HTTP/1.0\r\n$3\r\nConnection: close\r\n\r\n" | nc 169.254.169.254 80 | tr -d '\r'; }
echo "probe v1=$(req GET /latest/meta-data/instance-id 'X-Probe: 1' | head -n 1 | cut -d' ' -f2)"
req PUT /latest/api/token 'X-aws-ec2-metadata-token-ttl-seconds: 60' >/tmp/put
echo "probe put=$(head -n 1 /tmp/put | cut -d' ' -f2)"
token=$(sed '1,/^$/d' /tmp/put)
echo "probe v2=$(req GET /latest/meta-data/instance-id "X-aws-ec2-metadata-token: $token" | sed '1,/^$/d')"
echo "probe keys=$(req GET /latest/meta-data/public-keys/0/openssh-key "X-aws-ec2-metadata-token: $token" | sed '1,/^$/d' | cut -d' ' -f1)"
"""


def test_metadata_tokens_required_and_endpoint_disabled(ec2, alice, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    key = client.create_key_pair(KeyName="k-" + uuid.uuid4().hex[:6], KeyType="ed25519")
    required = launch(client, image, user_data=script(IMDS_PROBE), KeyName=key["KeyName"],
                      MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 2})
    disabled = launch(client, image, user_data=script(IMDS_PROBE),
                      MetadataOptions={"HttpEndpoint": "disabled"})
    try:
        opts = instance(client, required)["MetadataOptions"]
        assert (opts["HttpTokens"], opts["HttpPutResponseHopLimit"]) == ("required", 2)
        text = wait_console(client, required, "probe keys=")
        assert "probe v1=401" in text
        assert "probe put=200" in text
        assert f"probe v2={required}" in text
        assert "probe keys=ssh-ed25519" in text
        text = wait_console(client, disabled, "probe keys=")
        assert "probe v1=403" in text
        assert "probe put=403" in text
        # The options change on a live instance through ModifyInstanceMetadataOptions.
        changed = client.modify_instance_metadata_options(InstanceId=disabled, HttpEndpoint="enabled",
                                                          InstanceMetadataTags="enabled")
        assert changed["InstanceMetadataOptions"]["HttpEndpoint"] == "enabled"
        assert instance(client, disabled)["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
        with pytest.raises(ClientError) as e:
            client.modify_instance_metadata_options(InstanceId=disabled, HttpTokens="sometimes")
        assert error_code(e.value) == "InvalidParameterValue"
    finally:
        client.terminate_instances(InstanceIds=[required, disabled])


def test_launch_refusals(ec2, alice, bob, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    with pytest.raises(ClientError) as e:
        launch(client, image, KeyName="no-such-key-" + uuid.uuid4().hex[:6])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"
    with pytest.raises(ClientError) as e:
        launch(client, image, SecurityGroupIds=["sg-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidGroup.NotFound"
    with pytest.raises(ClientError) as e:
        launch(client, image, SubnetId="subnet-0123456789abcdef0")
    assert error_code(e.value) == "InvalidSubnetID.NotFound"
    with pytest.raises(ClientError) as e:
        launch(client, image, SubnetId="subnet-0123456789abcdef0",
               NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": "subnet-0123456789abcdef0"}])
    assert error_code(e.value) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as e:
        launch(client, image, MetadataOptions={"HttpPutResponseHopLimit": 65})
    assert error_code(e.value) == "InvalidParameterValue"
    # Another account's key pair is not found.
    key = ec2(bob).create_key_pair(KeyName="bobs-" + uuid.uuid4().hex[:6])
    with pytest.raises(ClientError) as e:
        launch(client, image, KeyName=key["KeyName"])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"


def test_public_addresses_listen_only_while_running(ec2, alice, guest_image, web_group):
    """A terminated instance's address and ports are given back: nothing listens there."""
    client = ec2(alice)
    image, _ = guest_image
    _, group = web_group
    client.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "127.0.0.0/8"}]}])
    iid = launch(client, image, SecurityGroupIds=[group])
    public = instance(client, iid)["PublicIpAddress"]
    wait_state(client, iid, "instance_running")
    assert wait_http(public, iid).strip() == iid
    client.terminate_instances(InstanceIds=[iid])
    wait_state(client, iid, "instance_terminated")
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((public, 80)) != 0


def test_public_address_pool_limits(tmp_path, guest_raw):  # noqa: F811
    """A small pool runs out with EC2's error and nothing half-launched; pools must be
    loopback networks without 127.0.0.1."""
    bad = subprocess.run([openami_bin(), "serve", "--data-dir", str(tmp_path / "bad"),
                          "--listen", "127.0.0.1:0", "--public-ip-pool", "127.0.0.0/8"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "127.0.0.1" in bad.stderr
    (tmp_path / "small").mkdir()
    server = Server(tmp_path / "small" / "data", extra_args=["--public-ip-pool", "127.100.9.0/30"])
    try:
        creds = server.create_account("pool-" + uuid.uuid4().hex[:6])
        client = boto3.client(
            "ec2", endpoint_url=server.endpoint, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
        snap = upload(server, creds, guest_raw)
        client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        image = client.register_image(
            Name="pool-" + uuid.uuid4().hex[:6], Architecture="x86_64", RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
        got = client.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.micro",
                                   UserData=script("true"))["Instances"]
        assert sorted(i["PublicIpAddress"] for i in got) == ["127.100.9.1", "127.100.9.2"]
        with pytest.raises(ClientError) as e:
            client.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.micro")
        assert error_code(e.value) == "AddressLimitExceeded"
        live = [i for r in client.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"]
        assert len(live) == 2
        # Without a public address there is no limit to hit.
        private_only = client.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", UserData=script("true"),
            NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": False}])["Instances"][0]
        assert "PublicIpAddress" not in private_only
        client.terminate_instances(InstanceIds=[i["InstanceId"] for i in got] + [private_only["InstanceId"]])
    finally:
        assert server.stop() == 0

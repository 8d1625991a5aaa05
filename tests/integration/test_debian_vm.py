"""A real Debian 12 cloud image, end to end, through boto3 and the AWS CLI only (plus ssh
and curl as a user would run them).

`openami quickstart` builds the image from Debian packages (cached in
~/.cache/openami/images) and publishes it as a public Quick Start image. An instance
launched from it with a key pair, a security group and #cloud-config user data configures
itself with cloud-init from openami's metadata service: the EC2 datasource, its hostname
(the private DNS name), the key for `debian`, the user data's file, command and web server.
Port 80 answers on the public address only while an ingress rule allows it; IMDSv2 is
required. CreateImage of it gives an image whose instance boots with its own hostname and
host keys.

Each Debian boot takes about a minute under TCG here: the module keeps them to two.
"""

import base64
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import openami_bin
from test_instance_network import http_get, instance, wait_console, wait_http
from test_instances import VM_WAITER, needs_qemu, upload

pytestmark = needs_qemu

BOOT_TIMEOUT = 900
FINISHED = " finished at "

USER_DATA = """#cloud-config
write_files:
  - path: /var/tmp/openami-marker
    content: "hello from user data\\n"
runcmd:
  - [sh, -c, "echo ran-runcmd > /var/tmp/runcmd-marker"]
  - [sh, -c, "mkdir -p /srv/www && hostname > /srv/www/index.html"]
  - [sh, -c, "busybox httpd -p 80 -h /srv/www"]
"""


def image_cache() -> Path:
    return Path(os.environ.get("OPENAMI_IMAGE_CACHE",
                               Path.home() / ".cache" / "openami" / "images"))


@pytest.fixture(scope="module")
def quickstart(server):
    """Publishes the Debian image with `openami quickstart`: its id."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("building the Debian image needs root (mke2fs -d keeps file owners)")
    out = subprocess.run(
        [openami_bin(), "quickstart", "--data-dir", str(server.data_dir), "--endpoint",
         server.endpoint, "--image-dir", str(image_cache()), "--no-progress"],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout)["Images"][0]


def ssh(key: Path, ip: str, command: str, timeout=60, check=True) -> str:
    out = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
         f"debian@{ip}", command],
        capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"ssh {command!r}: {out.returncode} {out.stderr}"
    return out.stdout


def wait_ssh(key: Path, ip: str, timeout=BOOT_TIMEOUT) -> float:
    start = time.time()
    last = ""
    while time.time() - start < timeout:
        out = subprocess.run(
            ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
             f"debian@{ip}", "true"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            return time.time() - start
        last = out.stderr
        time.sleep(3)
    raise AssertionError(f"no ssh to {ip} after {timeout} s: {last}")


def imds_from_guest(key: Path, ip: str, path: str, token: bool) -> str:
    """Status and body of an IMDS request made inside the guest (python3 is there for cloud-init)."""
    script = (
        "import urllib.request, urllib.error\n"
        "h = {}\n"
        + ("r = urllib.request.Request('http://169.254.169.254/latest/api/token', method='PUT', "
           "headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'})\n"
           "h['X-aws-ec2-metadata-token'] = urllib.request.urlopen(r, timeout=5).read().decode()\n"
           if token else "")
        + f"r = urllib.request.Request('http://169.254.169.254/latest/{path}', headers=h)\n"
        "try:\n"
        "    print(200, urllib.request.urlopen(r, timeout=5).read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n")
    encoded = base64.b64encode(script.encode()).decode()
    return ssh(key, ip, f"echo {encoded} | base64 -d | python3").strip()


def test_debian_cloud_image_end_to_end(server, ec2, alice, aws, quickstart, tmp_path):
    client = ec2(alice)
    # The Quick Start image, found as a user finds Amazon's.
    found = aws(alice, "ec2", "describe-images", "--owners", "amazon", "--filters",
                "Name=name,Values=debian-12-amd64-*")["Images"]
    assert quickstart["ImageId"] in [i["ImageId"] for i in found]
    image = quickstart["ImageId"]

    # The same disk as the user's own image: `openami snapshot upload` + RegisterImage.
    raw = image_cache() / "debian-12-amd64.raw"
    snap = upload(server, alice, raw)
    client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=VM_WAITER)
    own = client.register_image(
        Name="my-debian-" + uuid.uuid4().hex[:6], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", EnaSupport=True,
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    client.get_waiter("image_available").wait(ImageIds=[own], WaiterConfig=VM_WAITER)

    key = client.create_key_pair(KeyName="debian-" + uuid.uuid4().hex[:6], KeyType="ed25519")
    pem = tmp_path / "key.pem"
    pem.write_text(key["KeyMaterial"])
    pem.chmod(0o600)
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = client.create_security_group(GroupName="debian-" + uuid.uuid4().hex[:6],
                                         Description="ssh", VpcId=vpc["VpcId"])["GroupId"]
    aws(alice, "ec2", "authorize-security-group-ingress", "--group-id", group,
        "--protocol", "tcp", "--port", "22", "--cidr", "0.0.0.0/0")

    # The image's public SSM parameter, as on AWS; RunInstances resolves it.
    ssm = ec2(alice, service="ssm")
    param = ssm.get_parameter(Name="/aws/service/debian/release/12/latest/amd64")["Parameter"]
    assert param["Value"] == image
    started = time.time()
    first = client.run_instances(
        ImageId="resolve:ssm:/aws/service/debian/release/12/latest/amd64", MinCount=1, MaxCount=1, InstanceType="t3.small", KeyName=key["KeyName"],
        SecurityGroupIds=[group], UserData=USER_DATA,
        MetadataOptions={"HttpTokens": "required"})["Instances"][0]["InstanceId"]
    second = None
    try:
        inst = instance(client, first)
        assert inst["ImageId"] == image
        public, private = inst["PublicIpAddress"], inst["PrivateIpAddress"]
        to_ssh = wait_ssh(pem, public)
        print(f"[timing] Debian boot to SSH through openami: {time.time() - started:.1f} s "
              f"(ssh answered {to_ssh:.1f} s after the first try)")
        text = wait_console(client, first, FINISHED, timeout=BOOT_TIMEOUT)
        assert "DataSourceEc2" in text
        # cloud-init may still be running its final stage when sshd answers.
        ssh(pem, public, "cloud-init status --wait >/dev/null; true", timeout=BOOT_TIMEOUT)
        assert ssh(pem, public, "hostname").strip() == "ip-" + private.replace(".", "-")
        assert ssh(pem, public, "cat /var/tmp/openami-marker") == "hello from user data\n"
        assert ssh(pem, public, "cat /var/tmp/runcmd-marker").strip() == "ran-runcmd"
        assert "DataSourceEc2" in ssh(pem, public, "cat /run/cloud-init/result.json")
        # The private address is the NIC's own.
        assert f"inet {private}/" in ssh(pem, public, "ip -4 -o addr show scope global")
        # IMDSv2 required: a v1 request is refused, a token request then succeeds.
        assert imds_from_guest(pem, public, "meta-data/instance-id", token=False) == "401"
        assert imds_from_guest(pem, public, "meta-data/instance-id", token=True) == f"200 {first}"

        # Port 80 answers only while a rule allows it.
        assert http_get(public) is None
        client.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        page = subprocess.run(["curl", "-sS", "--max-time", "10", "--retry", "5", "--retry-all-errors",
                               f"http://{public}/"], capture_output=True, text=True, timeout=120)
        assert page.stdout.strip() == "ip-" + private.replace(".", "-"), page.stderr
        client.revoke_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        wait_http(public, None)
        host_key = ssh(pem, public, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]

        # CreateImage of the configured instance; an instance of it is a new machine.
        made = client.create_image(InstanceId=first, Name="debian-made-" + uuid.uuid4().hex[:6])["ImageId"]
        client.get_waiter("image_available").wait(ImageIds=[made], WaiterConfig=VM_WAITER)
        client.terminate_instances(InstanceIds=[first])
        second = client.run_instances(
            ImageId=made, MinCount=1, MaxCount=1, InstanceType="t3.small", KeyName=key["KeyName"],
            SecurityGroupIds=[group])["Instances"][0]["InstanceId"]
        inst2 = instance(client, second)
        public2, private2 = inst2["PublicIpAddress"], inst2["PrivateIpAddress"]
        assert private2 != private
        wait_ssh(pem, public2)
        ssh(pem, public2, "cloud-init status --wait >/dev/null; true", timeout=BOOT_TIMEOUT)
        assert ssh(pem, public2, "hostname").strip() == "ip-" + private2.replace(".", "-")
        assert ssh(pem, public2, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1] != host_key
        # The first instance's files came along in the image; cloud-init knows the new id.
        assert ssh(pem, public2, "cat /var/tmp/openami-marker") == "hello from user data\n"
        assert ssh(pem, public2, "cloud-init query instance_id").strip() == second
    finally:
        client.terminate_instances(InstanceIds=[i for i in (first, second) if i])
    client.get_waiter("instance_terminated").wait(
        InstanceIds=[i for i in (first, second) if i], WaiterConfig=VM_WAITER)

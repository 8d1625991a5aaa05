"""Terraform with the hashicorp/aws provider against openami, as a user would run it.

A configuration with a key pair (a key made by ssh-keygen), a security group with inline
ingress rules plus one `aws_vpc_security_group_ingress_rule`, a `data "aws_ami"` lookup of
the test guest image by name, and an `aws_instance` is applied, checked against
DescribeInstances through boto3, planned again (which must show no changes: every attribute
the provider reads back round-trips), and destroyed.

Where Terraform and the provider come from: no package registry these machines reach has
them (Debian does not ship Terraform; providers come from HashiCorp's release site), so they
are part of the machine image: `terraform` on PATH, and the provider's release unpacked in a
filesystem mirror (`<mirror>/registry.terraform.io/hashicorp/aws/<version>/linux_amd64/
terraform-provider-aws_*`) under /opt/tf-plugins. .ci/run reports both (it cannot install
them); OPENAMI_TF_MIRROR names another mirror directory. `terraform init` reads only that mirror
(direct installation is excluded), so nothing is downloaded.

Terraform may only talk to openami: the proxies are unset, every skip_* setting that would
reach AWS (credentials validation, account id, metadata API, region validation) is on, the
EC2 endpoint is openami, and any provider error that names an AWS host fails the test.
"""

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from test_instances import guest_image, guest_raw, needs_qemu, wait_until  # noqa: F401

MIRROR_CANDIDATES = [os.environ.get("OPENAMI_TF_MIRROR", ""), "/opt/tf-plugins",
                     str(Path.home() / ".terraform.d" / "plugins"), "/usr/share/terraform/plugins"]


def find_mirror():
    for cand in MIRROR_CANDIDATES:
        if cand and list(Path(cand).glob("registry.terraform.io/hashicorp/aws/*/linux_amd64/"
                                         "terraform-provider-aws*")):
            return cand
    return None


MIRROR = find_mirror()

needs_terraform = pytest.mark.skipif(
    (shutil.which("terraform") is None or MIRROR is None) and os.environ.get("CI") != "true",
    reason="terraform or the hashicorp/aws provider mirror (/opt/tf-plugins, or "
           "OPENAMI_TF_MIRROR) is missing: both come with the machine image, no registry has them",
)

pytestmark = [needs_qemu, needs_terraform]

# Every request the provider sends is logged (TF_LOG=DEBUG) with its URL and peer; each must
# be loopback. A dial or a URL naming an AWS host means it tried to reach AWS itself.
REQUEST_TARGET = re.compile(r"(?:http\.url|net\.peer\.name|server\.address)=(\S+)")
AWS_HOSTS = re.compile(r"(?:dial tcp |(?<!xmlns=\")https?://)[^ ]*(?:amazonaws\.com|169\.254\.169\.254|api\.aws)", re.I)


def tf_env(tmp: Path, creds) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "TF_")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    cli_config = tmp / "terraformrc"
    cli_config.write_text(textwrap.dedent(f"""\
        provider_installation {{
          filesystem_mirror {{
            path    = "{MIRROR}"
            include = ["registry.terraform.io/hashicorp/aws"]
          }}
          direct {{
            exclude = ["registry.terraform.io/*/*"]
          }}
        }}
        disable_checkpoint = true
    """))
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config), TF_IN_AUTOMATION="1", TF_INPUT="0",
        CHECKPOINT_DISABLE="1", TF_LOG="DEBUG", TF_LOG_PATH=str(tmp / "terraform.log"),
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true", NO_PROXY="*",
    )
    return env


def provider_tf(endpoint: str, *services: str) -> str:
    """The `terraform` and `provider "aws"` blocks every test configuration starts with:
    these services' endpoints are openami, and every setting that would reach AWS is off."""
    width = max(len(s) for s in services)
    endpoints = "".join(f'    {s.ljust(width)} = "{endpoint}"\n' for s in services)
    return (
        "terraform {\n"
        "  required_providers {\n"
        '    aws = { source = "hashicorp/aws" }\n'
        "  }\n"
        "}\n"
        "\n"
        'provider "aws" {\n'
        '  region                      = "us-east-1"\n'
        "  skip_credentials_validation = true\n"
        "  skip_requesting_account_id  = true\n"
        "  skip_metadata_api_check     = true\n"
        "  skip_region_validation      = true\n"
        "  endpoints {\n"
        f"{endpoints}"
        "  }\n"
        "}\n"
        "\n"
    )


def main_tf(endpoint: str, image_name: str, public_key: str, suffix: str) -> str:
    return provider_tf(endpoint, "ec2") + textwrap.dedent(f"""\
        resource "aws_key_pair" "k" {{
          key_name   = "tf-key-{suffix}"
          public_key = "{public_key}"
        }}

        resource "aws_security_group" "web" {{
          name        = "tf-web-{suffix}"
          description = "web and ssh"
          ingress {{
            description = "ssh"
            from_port   = 22
            to_port     = 22
            protocol    = "tcp"
            cidr_blocks = ["0.0.0.0/0"]
          }}
          ingress {{
            description = "http"
            from_port   = 80
            to_port     = 80
            protocol    = "tcp"
            cidr_blocks = ["0.0.0.0/0"]
          }}
          egress {{
            from_port   = 0
            to_port     = 0
            protocol    = "-1"
            cidr_blocks = ["0.0.0.0/0"]
          }}
          tags = {{ Name = "tf-web-{suffix}" }}
        }}

        resource "aws_security_group" "extra" {{
          name        = "tf-extra-{suffix}"
          description = "one rule as its own resource"
        }}

        resource "aws_vpc_security_group_ingress_rule" "https" {{
          security_group_id = aws_security_group.extra.id
          description       = "https"
          cidr_ipv4         = "10.0.0.0/8"
          from_port         = 443
          to_port           = 443
          ip_protocol       = "tcp"
          tags              = {{ Name = "https-{suffix}" }}
        }}

        data "aws_ami" "guest" {{
          most_recent = true
          owners      = ["self"]
          filter {{
            name   = "name"
            values = ["{image_name}"]
          }}
        }}

        resource "aws_instance" "vm" {{
          ami                    = data.aws_ami.guest.id
          instance_type          = "t3.micro"
          key_name               = aws_key_pair.k.key_name
          vpc_security_group_ids = [aws_security_group.web.id, aws_security_group.extra.id]
          credit_specification {{
            cpu_credits = "standard"
          }}
          tags = {{
            Name = "tf-vm-{suffix}"
            Team = "openami"
          }}
        }}

        output "instance_id" {{ value = aws_instance.vm.id }}
        output "public_ip"   {{ value = aws_instance.vm.public_ip }}
        output "private_ip"  {{ value = aws_instance.vm.private_ip }}
        output "ami"         {{ value = data.aws_ami.guest.id }}
        output "web_group"   {{ value = aws_security_group.web.id }}
        output "extra_group" {{ value = aws_security_group.extra.id }}
        output "rule_id"     {{ value = aws_vpc_security_group_ingress_rule.https.id }}
    """)


def check_no_aws_contact(tmp: Path, text: str):
    log_path = tmp / "terraform.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    targets = REQUEST_TARGET.findall(log)
    for target in targets:
        host = re.sub(r"^https?://", "", target).split("/")[0].rsplit(":", 1)[0]
        assert host.startswith("127."), f"terraform sent a request to {target} (not loopback)"
    for source in (text, log):
        for line in source.splitlines():
            if AWS_HOSTS.search(line):
                raise AssertionError(f"terraform tried to reach AWS: {line}")
    return len(targets)


def terraform(tmp: Path, env: dict, *args, ok_codes=(0,)):
    out = subprocess.run(["terraform", *args], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=300)
    check_no_aws_contact(tmp, out.stdout + out.stderr)
    assert out.returncode in ok_codes, (
        f"terraform {' '.join(args)} exited {out.returncode}\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
        f"\n(full debug log: {tmp / 'terraform.log'})")
    return out


def test_terraform_apply_plan_destroy(server, alice, ec2, guest_image, tmp_path):
    assert shutil.which("terraform"), "terraform is not on PATH"
    assert MIRROR, f"no hashicorp/aws provider in any of {MIRROR_CANDIDATES}"
    client = ec2(alice)
    image, _ = guest_image
    image_name = client.describe_images(ImageIds=[image])["Images"][0]["Name"]
    suffix = tmp_path.name[-8:].replace("_", "-")

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tf-test",
                    "-f", str(tmp_path / "id")], check=True)
    public_key = (tmp_path / "id.pub").read_text().strip()
    (tmp_path / "main.tf").write_text(main_tf(server.endpoint, image_name, public_key, suffix))
    env = tf_env(tmp_path, alice)

    terraform(tmp_path, env, "init", "-no-color")
    terraform(tmp_path, env, "apply", "-auto-approve", "-no-color")
    assert check_no_aws_contact(tmp_path, "") > 0, "no request of the provider's in the debug log"
    outputs = {k: v["value"] for k, v in json.loads(
        terraform(tmp_path, env, "output", "-json").stdout).items()}

    assert outputs["ami"] == image
    inst = client.describe_instances(InstanceIds=[outputs["instance_id"]])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "running"
    assert inst["InstanceType"] == "t3.micro"
    assert inst["ImageId"] == image
    assert inst["KeyName"] == f"tf-key-{suffix}"
    assert inst["PublicIpAddress"] == outputs["public_ip"]
    assert outputs["public_ip"].startswith("127.100.")
    assert inst["PrivateIpAddress"] == outputs["private_ip"]
    assert inst["PrivateDnsNameOptions"]["HostnameType"] == "ip-name"
    # A legacy-BIOS guest has no UEFI variable store: no UefiData.
    uefi = client.get_instance_uefi_data(InstanceId=inst["InstanceId"])
    assert uefi["InstanceId"] == inst["InstanceId"] and "UefiData" not in uefi
    assert sorted(g["GroupId"] for g in inst["SecurityGroups"]) == sorted(
        [outputs["web_group"], outputs["extra_group"]])
    assert {t["Key"]: t["Value"] for t in inst["Tags"]} == {"Name": f"tf-vm-{suffix}", "Team": "openami"}
    web = client.describe_security_groups(GroupIds=[outputs["web_group"]])["SecurityGroups"][0]
    assert sorted((p["FromPort"], p["IpRanges"][0]["Description"]) for p in web["IpPermissions"]) == [
        (22, "ssh"), (80, "http")]
    rules = client.describe_security_group_rules(SecurityGroupRuleIds=[outputs["rule_id"]])
    assert rules["SecurityGroupRules"][0]["FromPort"] == 443

    # A second plan must see no drift: everything the provider read back round-tripped.
    plan = terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color", ok_codes=(0, 2))
    assert plan.returncode == 0, f"terraform plan shows drift after apply:\n{plan.stdout[-8000:]}"

    # The plan is not blind: a change made behind Terraform's back (the CPU credit option,
    # through boto3) shows as drift, and changing it back clears it.
    iid = outputs["instance_id"]
    credits = client.describe_instance_credit_specifications(InstanceIds=[iid])
    assert credits["InstanceCreditSpecifications"] == [{"InstanceId": iid, "CpuCredits": "standard"}]
    changed = client.modify_instance_credit_specification(
        InstanceCreditSpecifications=[{"InstanceId": iid, "CpuCredits": "unlimited"}])
    assert changed["SuccessfulInstanceCreditSpecifications"] == [{"InstanceId": iid}]
    plan = terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color", ok_codes=(2,))
    assert 'cpu_credits = "unlimited" -> "standard"' in plan.stdout, plan.stdout[-4000:]
    client.modify_instance_credit_specification(
        InstanceCreditSpecifications=[{"InstanceId": iid, "CpuCredits": "standard"}])
    terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color")

    terraform(tmp_path, env, "destroy", "-auto-approve", "-no-color")
    gone = wait_until(client, outputs["instance_id"], "terminated", timeout=60)
    assert gone["State"]["Name"] == "terminated"
    groups = client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"tf-web-{suffix}", f"tf-extra-{suffix}"]}])
    assert groups["SecurityGroups"] == []
    keys = client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"tf-key-{suffix}"]}])
    assert keys["KeyPairs"] == []

    # Nothing the provider called was an action openami lacks (it tolerates some such errors
    # silently, which would hide a gap).
    log = (tmp_path / "terraform.log").read_text(errors="replace")
    assert "<Code>UnsupportedOperation</Code>" not in log, [
        line for line in log.splitlines() if "UnsupportedOperation" in line][:5]

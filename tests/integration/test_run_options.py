"""RunInstances options openami's instances lack are refused (not dropped), their defaults
accepted; the CPU credit calls' errors. No machine is started: the refusals come first.
(The launches themselves, with credit options read back, are in test_terraform.py.)"""

import pytest
from botocore.exceptions import ClientError

from conftest import error_code


@pytest.mark.parametrize("option", [
    {"HibernationOptions": {"Configured": True}},
    {"Monitoring": {"Enabled": True}},
    {"EnclaveOptions": {"Enabled": True}},
    {"PrivateDnsNameOptions": {"HostnameType": "resource-name"}},
    {"MaintenanceOptions": {"AutoRecovery": "disabled"}},
    {"Placement": {"Tenancy": "dedicated"}},
])
def test_unsupported_run_options_are_refused(ec2, alice, option):
    client = ec2(alice)
    with pytest.raises(ClientError) as e:
        client.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1,
                             InstanceType="t3.micro", **option)
    assert error_code(e.value) == "UnsupportedOperation"


def test_defaults_pass_the_option_check(ec2, alice):
    client = ec2(alice)
    with pytest.raises(ClientError) as e:
        client.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1,
                             InstanceType="t3.micro", HibernationOptions={"Configured": False},
                             Monitoring={"Enabled": False}, Placement={"AvailabilityZone": ""})
    # Past the option check (and the empty zone): the image is what is missing.
    assert error_code(e.value) == "InvalidAMIID.NotFound"


def test_credit_specification_errors(ec2, alice):
    client = ec2(alice)
    with pytest.raises(ClientError) as e:
        client.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1,
                             InstanceType="t3.micro", CreditSpecification={"CpuCredits": "fast"})
    assert error_code(e.value) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        client.describe_instance_credit_specifications(InstanceIds=["i-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidInstanceID.NotFound"
    out = client.modify_instance_credit_specification(
        InstanceCreditSpecifications=[{"InstanceId": "i-0123456789abcdef0", "CpuCredits": "standard"}])
    assert out["SuccessfulInstanceCreditSpecifications"] == []
    [failed] = out["UnsuccessfulInstanceCreditSpecifications"]
    assert failed["InstanceId"] == "i-0123456789abcdef0"
    assert failed["Error"]["Code"] == "InvalidInstanceID.NotFound"


def test_uefi_data_errors(ec2, alice):
    client = ec2(alice)
    # The Terraform AWS provider's aws_ami data source asks with an image id.
    with pytest.raises(ClientError) as e:
        client.get_instance_uefi_data(InstanceId="ami-0123456789abcdef0")
    assert error_code(e.value) == "InvalidInstanceID.Malformed"
    with pytest.raises(ClientError) as e:
        client.get_instance_uefi_data(InstanceId="i-0123456789abcdef0")
    assert error_code(e.value) == "InvalidInstanceID.NotFound"

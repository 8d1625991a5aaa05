"""EC2 launch templates through boto3 and the AWS CLI: templates and their versions
(`$Latest`/`$Default`, the default moved, SourceVersion), Describe filters and pagination,
deleting versions and templates and the errors EC2 answers, account isolation,
GetLaunchTemplateData, and RunInstances from a template booting the test guest.
"""

import base64
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import error_code
from test_instances import (console, guest_image, guest_raw, needs_qemu,  # noqa: F401
                            script, terminate, wait_state)


def name(prefix="lt"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_create_versions_default_and_latest(ec2, alice, aws):
    client = ec2(alice)
    n = name()
    lt = client.create_launch_template(
        LaunchTemplateName=n, VersionDescription="first",
        LaunchTemplateData={
            "ImageId": "resolve:ssm:/openami/does-not-matter", "InstanceType": "t3.micro",
            "SecurityGroupIds": ["sg-0123456789abcdef0"],
            "NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": True,
                                   "Groups": ["sg-0123456789abcdef1"]}],
            "BlockDeviceMappings": [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3"}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}],
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
            "CreditSpecification": {"CpuCredits": "unlimited"},
        },
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "team", "Value": "a"}]}],
    )["LaunchTemplate"]
    lt_id = lt["LaunchTemplateId"]
    assert lt_id.startswith("lt-") and len(lt_id) == 20
    assert lt["DefaultVersionNumber"] == 1 and lt["LatestVersionNumber"] == 1
    assert lt["Tags"] == [{"Key": "team", "Value": "a"}]
    assert lt["CreatedBy"] == f"arn:aws:iam::{alice['AccountId']}:root"

    with pytest.raises(ClientError) as e:
        client.create_launch_template(LaunchTemplateName=n, LaunchTemplateData={"InstanceType": "t3.nano"})
    assert error_code(e.value) == "InvalidLaunchTemplateName.AlreadyExistsException"

    # Version 2 from version 1 with the type overridden; version 3 from nothing.
    v2 = client.create_launch_template_version(
        LaunchTemplateId=lt_id, SourceVersion="1", VersionDescription="bigger",
        LaunchTemplateData={"InstanceType": "t3.small"})["LaunchTemplateVersion"]
    assert v2["VersionNumber"] == 2 and v2["DefaultVersion"] is False
    data2 = v2["LaunchTemplateData"]
    assert data2["InstanceType"] == "t3.small"
    assert data2["ImageId"] == "resolve:ssm:/openami/does-not-matter"
    assert data2["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert data2["NetworkInterfaces"][0]["Groups"] == ["sg-0123456789abcdef1"]
    assert data2["BlockDeviceMappings"][0]["Ebs"] == {"VolumeSize": 2, "VolumeType": "gp3"}
    assert data2["MetadataOptions"]["HttpTokens"] == "required"
    assert data2["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert data2["CreditSpecification"] == {"CpuCredits": "unlimited"}
    assert data2["TagSpecifications"][0]["Tags"] == [{"Key": "role", "Value": "web"}]
    v3 = client.create_launch_template_version(
        LaunchTemplateName=n, LaunchTemplateData={"InstanceType": "t3.large"})["LaunchTemplateVersion"]
    assert v3["VersionNumber"] == 3 and "ImageId" not in v3["LaunchTemplateData"]

    def versions(*vs, **kw):
        out = client.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=list(vs), **kw)
        return [(v["VersionNumber"], v["DefaultVersion"]) for v in out["LaunchTemplateVersions"]]

    assert versions("$Latest") == [(3, False)]
    assert versions("$Default") == [(1, True)]
    assert versions() == [(1, True), (2, False), (3, False)]
    assert versions(MinVersion="2") == [(2, False), (3, False)]
    assert versions(MinVersion="1", MaxVersion="2") == [(1, True), (2, False)]
    assert versions(Filters=[{"Name": "instance-type", "Values": ["t3.s*"]}]) == [(2, False)]
    assert versions(Filters=[{"Name": "is-default-version", "Values": ["true"]}]) == [(1, True)]

    # Pagination over versions.
    page = client.describe_launch_template_versions(LaunchTemplateId=lt_id, MaxResults=2)
    assert [v["VersionNumber"] for v in page["LaunchTemplateVersions"]] == [1, 2]
    rest = client.describe_launch_template_versions(LaunchTemplateId=lt_id, MaxResults=2,
                                                    NextToken=page["NextToken"])
    assert [v["VersionNumber"] for v in rest["LaunchTemplateVersions"]] == [3]
    assert "NextToken" not in rest

    with pytest.raises(ClientError) as e:
        versions("9")
    assert error_code(e.value) == "InvalidLaunchTemplateId.VersionNotFound"

    # Move the default, with the AWS CLI.
    out = aws(alice, "ec2", "modify-launch-template", "--launch-template-id", lt_id,
              "--default-version", "2")
    assert out["LaunchTemplate"]["DefaultVersionNumber"] == 2
    assert versions("$Default") == [(2, True)]
    out = aws(alice, "ec2", "describe-launch-template-versions", "--launch-template-name", n,
              "--versions", "$Latest", "$Default")
    assert sorted(v["VersionNumber"] for v in out["LaunchTemplateVersions"]) == [2, 3]

    # Delete versions: the default cannot go; a missing one is reported; others go.
    res = client.delete_launch_template_versions(LaunchTemplateId=lt_id, Versions=["2", "3", "7"])
    assert [v["VersionNumber"] for v in res["SuccessfullyDeletedLaunchTemplateVersions"]] == [3]
    failed = {v["VersionNumber"]: v["ResponseError"]["Code"]
              for v in res["UnsuccessfullyDeletedLaunchTemplateVersions"]}
    assert failed == {2: "unexpectedError", 7: "launchTemplateVersionDoesNotExist"}
    assert versions() == [(1, False), (2, True)]
    described = client.describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"][0]
    assert described["LatestVersionNumber"] == 2 and described["DefaultVersionNumber"] == 2
    # Numbers are not reused.
    v4 = client.create_launch_template_version(LaunchTemplateId=lt_id, SourceVersion="$Latest",
                                               LaunchTemplateData={})["LaunchTemplateVersion"]
    assert v4["VersionNumber"] == 4 and v4["LaunchTemplateData"]["InstanceType"] == "t3.small"

    deleted = client.delete_launch_template(LaunchTemplateName=n)["LaunchTemplate"]
    assert deleted["LaunchTemplateId"] == lt_id
    with pytest.raises(ClientError) as e:
        client.describe_launch_templates(LaunchTemplateIds=[lt_id])
    assert error_code(e.value) == "InvalidLaunchTemplateId.NotFound"
    with pytest.raises(ClientError) as e:
        client.delete_launch_template(LaunchTemplateName=n)
    assert error_code(e.value) == "InvalidLaunchTemplateName.NotFoundException"


def test_describe_filters_pagination_errors_and_isolation(ec2, alice, bob, aws):
    client = ec2(alice)
    prefix = name("pg")
    ids = []
    for i in range(3):
        ids.append(client.create_launch_template(
            LaunchTemplateName=f"{prefix}-{i}", LaunchTemplateData={"InstanceType": "t3.nano"},
            TagSpecifications=[{"ResourceType": "launch-template",
                                "Tags": [{"Key": "batch", "Value": prefix}, {"Key": "i", "Value": str(i)}]}],
        )["LaunchTemplate"]["LaunchTemplateId"])

    by_tag = [{"Name": "tag:batch", "Values": [prefix]}]
    got = client.describe_launch_templates(Filters=by_tag)["LaunchTemplates"]
    assert sorted(t["LaunchTemplateId"] for t in got) == sorted(ids)
    got = client.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [f"{prefix}-1"]}])["LaunchTemplates"]
    assert [t["LaunchTemplateId"] for t in got] == [ids[1]]
    got = client.describe_launch_templates(LaunchTemplateNames=[f"{prefix}-2"])["LaunchTemplates"]
    assert [t["LaunchTemplateId"] for t in got] == [ids[2]]
    created = got[0]["CreateTime"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    got = client.describe_launch_templates(
        Filters=[{"Name": "create-time", "Values": [created]}])["LaunchTemplates"]
    assert ids[2] in [t["LaunchTemplateId"] for t in got]

    # Pagination: boto3's paginator and the CLI's.
    pages = client.get_paginator("describe_launch_templates").paginate(
        Filters=by_tag, PaginationConfig={"PageSize": 1})
    seen = [t["LaunchTemplateId"] for p in pages for t in p["LaunchTemplates"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    out = aws(alice, "ec2", "describe-launch-templates", "--filters", f"Name=tag:batch,Values={prefix}",
              "--page-size", "1")
    assert sorted(t["LaunchTemplateId"] for t in out["LaunchTemplates"]) == sorted(ids)

    # Errors.
    with pytest.raises(ClientError) as e:
        client.describe_launch_templates(LaunchTemplateIds=["lt-nothex"])
    assert error_code(e.value) == "InvalidLaunchTemplateId.Malformed"
    with pytest.raises(ClientError) as e:
        client.describe_launch_templates(LaunchTemplateIds=["lt-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidLaunchTemplateId.NotFound"
    with pytest.raises(ClientError) as e:
        client.describe_launch_templates(LaunchTemplateNames=["no-such-template"])
    assert error_code(e.value) == "InvalidLaunchTemplateName.NotFoundException"
    with pytest.raises(ClientError) as e:
        client.create_launch_template(LaunchTemplateName=name(),
                                      LaunchTemplateData={"IamInstanceProfile": {"Name": "x"}})
    assert error_code(e.value) == "UnsupportedOperation"
    assert "IamInstanceProfile" in str(e.value)
    with pytest.raises(ClientError) as e:
        client.create_launch_template(LaunchTemplateName=name(),
                                      LaunchTemplateData={"Monitoring": {"Enabled": True}})
    assert error_code(e.value) == "UnsupportedOperation"
    with pytest.raises(ClientError) as e:
        client.create_launch_template(LaunchTemplateName="bad name!", LaunchTemplateData={})
    assert error_code(e.value) == "InvalidLaunchTemplateName.MalformedException"
    r = aws(alice, "ec2", "describe-launch-template-versions", "--launch-template-id",
            "lt-0123456789abcdef0", check=False)
    assert r.returncode != 0 and "InvalidLaunchTemplateId.NotFound" in r.stderr

    # Bob sees none of alice's templates and may reuse a name.
    other = ec2(bob)
    with pytest.raises(ClientError) as e:
        other.describe_launch_templates(LaunchTemplateIds=[ids[0]])
    assert error_code(e.value) == "InvalidLaunchTemplateId.NotFound"
    assert other.describe_launch_templates(Filters=by_tag)["LaunchTemplates"] == []
    with pytest.raises(ClientError) as e:
        other.delete_launch_template(LaunchTemplateId=ids[0])
    assert error_code(e.value) == "InvalidLaunchTemplateId.NotFound"
    mine = other.create_launch_template(LaunchTemplateName=f"{prefix}-0", LaunchTemplateData={})
    other.delete_launch_template(LaunchTemplateId=mine["LaunchTemplate"]["LaunchTemplateId"])
    # Nor does another region of alice.
    assert ec2(alice, region="us-west-2").describe_launch_templates(Filters=by_tag)["LaunchTemplates"] == []
    for i in ids:
        client.delete_launch_template(LaunchTemplateId=i)


def test_run_without_image_anywhere_is_refused(ec2, alice):
    client = ec2(alice)
    lt = client.create_launch_template(LaunchTemplateName=name(),
                                       LaunchTemplateData={"InstanceType": "t3.nano"})["LaunchTemplate"]
    with pytest.raises(ClientError) as e:
        client.run_instances(MinCount=1, MaxCount=1,
                             LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"]})
    assert error_code(e.value) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        client.run_instances(MinCount=1, MaxCount=1, ImageId="ami-0123456789abcdef0",
                             LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "5"})
    assert error_code(e.value) == "InvalidLaunchTemplateId.VersionNotFound"
    with pytest.raises(ClientError) as e:
        client.run_instances(MinCount=1, MaxCount=1, ImageId="ami-0123456789abcdef0",
                             LaunchTemplate={"LaunchTemplateName": "no-such-template"})
    assert error_code(e.value) == "InvalidLaunchTemplateName.NotFoundException"
    client.delete_launch_template(LaunchTemplateId=lt["LaunchTemplateId"])


@needs_qemu
def test_run_instances_from_a_template(ec2, alice, aws, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    vpc = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = client.create_security_group(GroupName=name("ltgroup"), Description="lt",
                                         VpcId=vpc["VpcId"])["GroupId"]
    key = client.create_key_pair(KeyName=name("k"), KeyType="ed25519")["KeyName"]
    marker = "lt-marker-" + uuid.uuid4().hex[:8]
    user_data = script(f"echo {marker}")
    lt = client.create_launch_template(
        LaunchTemplateName=name(),
        LaunchTemplateData={
            "ImageId": image, "InstanceType": "t3.micro", "KeyName": key, "SecurityGroupIds": [group],
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": "role", "Value": "web"}, {"Key": "env", "Value": "t"}]}],
        })["LaunchTemplate"]
    lt_id = lt["LaunchTemplateId"]
    # Version 2 is a bigger type; the default stays 1.
    client.create_launch_template_version(LaunchTemplateId=lt_id, SourceVersion="1",
                                          LaunchTemplateData={"InstanceType": "t3.small"})

    res = client.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": lt_id},
                               TagSpecifications=[{"ResourceType": "instance",
                                                   "Tags": [{"Key": "env", "Value": "mine"}]}])
    inst = res["Instances"][0]
    iid = inst["InstanceId"]
    try:
        assert inst["ImageId"] == image and inst["InstanceType"] == "t3.micro"
        assert inst["KeyName"] == key
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group]
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags == {"role": "web", "env": "mine", "aws:ec2launchtemplate:id": lt_id,
                        "aws:ec2launchtemplate:version": "1"}
        ud = client.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
        assert base64.b64decode(ud).decode() == user_data
        wait_state(client, iid, "instance_running")
        deadline = time.time() + 180
        while marker not in console(client, iid):
            assert time.time() < deadline, console(client, iid)[-2000:]
            time.sleep(1)

        data = client.get_launch_template_data(InstanceId=iid)["LaunchTemplateData"]
        assert data["ImageId"] == image and data["InstanceType"] == "t3.micro"
        assert data["KeyName"] == key
        assert data["NetworkInterfaces"][0]["Groups"] == [group]
        assert base64.b64decode(data["UserData"]).decode() == user_data
        assert {"Key": "role", "Value": "web"} in data["TagSpecifications"][0]["Tags"]
        assert all(not t["Key"].startswith("aws:") for t in data["TagSpecifications"][0]["Tags"])
        assert data["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
        out = aws(alice, "ec2", "get-launch-template-data", "--instance-id", iid)
        assert out["LaunchTemplateData"]["InstanceType"] == "t3.micro"
    finally:
        terminate(client, iid)

    # Version $Latest by the CLI, and an explicit type overriding the template's.
    out = aws(alice, "ec2", "run-instances", "--count", "1",
              "--launch-template", f"LaunchTemplateId={lt_id},Version=$Latest",
              "--instance-type", "t3.nano")
    inst = out["Instances"][0]
    try:
        assert inst["InstanceType"] == "t3.nano"
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["aws:ec2launchtemplate:version"] == "2" and tags["role"] == "web"
    finally:
        terminate(client, inst["InstanceId"])
    client.delete_launch_template(LaunchTemplateId=lt_id)


def test_client_token_tags_and_ssm_image(ec2, alice, aws):
    client = ec2(alice)
    n = name()
    token = uuid.uuid4().hex
    first = client.create_launch_template(LaunchTemplateName=n, ClientToken=token,
                                          LaunchTemplateData={"InstanceType": "t3.nano"})
    again = client.create_launch_template(LaunchTemplateName=n, ClientToken=token,
                                          LaunchTemplateData={"InstanceType": "t3.nano"})
    lt_id = first["LaunchTemplate"]["LaunchTemplateId"]
    assert again["LaunchTemplate"]["LaunchTemplateId"] == lt_id
    vtoken = uuid.uuid4().hex
    for _ in range(2):
        v = client.create_launch_template_version(LaunchTemplateId=lt_id, ClientToken=vtoken,
                                                  LaunchTemplateData={})["LaunchTemplateVersion"]
        assert v["VersionNumber"] == 2

    # CreateTags / DeleteTags / DescribeTags on a template id.
    client.create_tags(Resources=[lt_id], Tags=[{"Key": "owner", "Value": "ops"}])
    got = client.describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"][0]
    assert got["Tags"] == [{"Key": "owner", "Value": "ops"}]
    tags = client.describe_tags(Filters=[{"Name": "resource-id", "Values": [lt_id]}])["Tags"]
    assert [(t["ResourceType"], t["Key"]) for t in tags] == [("launch-template", "owner")]
    client.delete_tags(Resources=[lt_id], Tags=[{"Key": "owner"}])
    assert "Tags" not in client.describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"][0]

    # A `resolve:ssm:` image id is kept in the template and resolved at launch.
    param = f"/lt-test/{uuid.uuid4().hex[:8]}/ami"
    ec2(alice, service="ssm").put_parameter(Name=param, Value="ami-00000000000000042", Type="String",
                                            DataType="aws:ec2:image")
    v3 = client.create_launch_template_version(
        LaunchTemplateId=lt_id, LaunchTemplateData={"ImageId": f"resolve:ssm:{param}"})
    assert v3["LaunchTemplateVersion"]["LaunchTemplateData"]["ImageId"] == f"resolve:ssm:{param}"
    with pytest.raises(ClientError) as e:
        client.run_instances(MinCount=1, MaxCount=1,
                             LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"})
    assert error_code(e.value) == "InvalidAMIID.NotFound"
    assert "ami-00000000000000042" in e.value.response["Error"]["Message"]
    client.delete_launch_template(LaunchTemplateId=lt_id)

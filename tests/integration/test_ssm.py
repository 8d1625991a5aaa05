"""SSM Parameter Store on the EC2 listener: boto3's `ssm` client and `aws ssm`, routed on
the SigV4 signing service; public /aws/service/ parameters published by the operator;
`resolve:ssm:` image ids in RunInstances."""

import json
import subprocess
import uuid
import xml.etree.ElementTree as ET

import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import error_code, openami_bin
from test_auth import send

ClientError = botocore.exceptions.ClientError


def unique(prefix="/t"):
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def publish(server, name, value, *flags):
    out = subprocess.run(
        [openami_bin(), "ssm", "publish-public", name, value, "--data-dir", str(server.data_dir), *flags],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def ssm(ec2):
    return lambda creds, region="us-east-1": ec2(creds, region=region, service="ssm")


def test_put_get_overwrite_versions_and_selectors(ssm, alice):
    c = ssm(alice)
    name = unique("/app")
    assert c.put_parameter(Name=name, Value="one", Type="String", Description="first")["Version"] == 1
    with pytest.raises(ClientError) as e:
        c.put_parameter(Name=name, Value="two", Type="String")
    assert error_code(e.value) == "ParameterAlreadyExists"
    assert c.put_parameter(Name=name, Value="two", Overwrite=True)["Version"] == 2
    p = c.get_parameter(Name=name)["Parameter"]
    assert (p["Value"], p["Version"], p["Type"], p["DataType"]) == ("two", 2, "String", "text")
    assert p["ARN"] == f"arn:aws:ssm:us-east-1:{alice['AccountId']}:parameter{name}"
    assert p["LastModifiedDate"].year >= 2024
    old = c.get_parameter(Name=f"{name}:1")["Parameter"]
    assert (old["Value"], old["Selector"]) == ("one", ":1")
    for ref, code in [(f"{name}:9", "ParameterVersionNotFound"), (unique("/nope"), "ParameterNotFound")]:
        with pytest.raises(ClientError) as e:
            c.get_parameter(Name=ref)
        assert error_code(e.value) == code
    history = c.get_parameter_history(Name=name)["Parameters"]
    assert [(h["Version"], h["Value"], h["Description"]) for h in history] == [(1, "one", "first"), (2, "two", "first")]
    got = c.get_parameters(Names=[name, f"{name}:1", "/missing/x"])
    assert sorted(p["Value"] for p in got["Parameters"]) == ["one", "two"]
    assert got["InvalidParameters"] == ["/missing/x"]
    c.put_parameter(Name=name + "-s", Value="hunter2", Type="SecureString")
    s = c.get_parameter(Name=name + "-s", WithDecryption=True)["Parameter"]
    assert (s["Type"], s["Value"]) == ("SecureString", "hunter2")


def test_validation_errors(ssm, alice):
    c = ssm(alice)
    cases = [
        (dict(Name="/a/" + "b/" * 15 + "c", Value="v", Type="String"), "HierarchyLevelLimitExceededException"),
        (dict(Name="a/b", Value="v", Type="String"), "ValidationException"),
        (dict(Name="/a b", Value="v", Type="String"), "ValidationException"),
        (dict(Name=unique(), Value="v"), "ValidationException"),  # no Type on create
        (dict(Name=unique(), Value="v", Type="SecureString", KeyId="alias/other"), "InvalidKeyId"),
        (dict(Name=unique(), Value="not-an-ami", Type="String", DataType="aws:ec2:image"), "ValidationException"),
        (dict(Name=unique(), Value="v", Type="String", DataType="Text"), "ValidationException"),
    ]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as e:
            c.put_parameter(**kwargs)
        assert error_code(e.value) == code, kwargs
    with pytest.raises(ClientError) as e:
        c.get_parameters_by_path(Path="/", MaxResults=11)
    assert error_code(e.value) == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.get_parameters_by_path(Path="/", NextToken="not-a-token")
    assert error_code(e.value) == "InvalidNextToken"


def test_by_path_pagination_and_delete(ssm, aws, alice):
    c = ssm(alice)
    base = unique("/tree")
    names = [f"{base}/a", f"{base}/b", f"{base}/sub/c", f"{base}/sub/deep/d", f"{base}/e"]
    for n in names:
        c.put_parameter(Name=n, Value=n[-1], Type="String", Tags=[{"Key": "leaf", "Value": n[-1]}])
    one = c.get_parameters_by_path(Path=base)["Parameters"]
    assert [p["Name"] for p in one] == [f"{base}/a", f"{base}/b", f"{base}/e"]
    seen, token = [], None
    while True:
        kwargs = dict(Path=base + "/", Recursive=True, MaxResults=2)
        if token:
            kwargs["NextToken"] = token
        page = c.get_parameters_by_path(**kwargs)
        assert len(page["Parameters"]) <= 2
        seen += [p["Name"] for p in page["Parameters"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == sorted(names)
    paginator = c.get_paginator("get_parameters_by_path")
    pages = list(paginator.paginate(Path=base, Recursive=True, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    filtered = c.get_parameters_by_path(
        Path=base, Recursive=True, ParameterFilters=[{"Key": "tag:leaf", "Values": ["d"]}])["Parameters"]
    assert [p["Name"] for p in filtered] == [f"{base}/sub/deep/d"]
    described = c.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [base + "/sub"]}])["Parameters"]
    assert [p["Name"] for p in described] == [f"{base}/sub/c", f"{base}/sub/deep/d"]
    assert c.list_tags_for_resource(ResourceType="Parameter", ResourceId=f"{base}/a")["TagList"] == [
        {"Key": "leaf", "Value": "a"}]

    # The AWS CLI: get-parameter and get-parameters-by-path --recursive (it pages itself).
    got = aws(alice, "ssm", "get-parameter", "--name", f"{base}/sub/c")
    assert got["Parameter"]["Value"] == "c"
    listed = aws(alice, "ssm", "get-parameters-by-path", "--path", base, "--recursive", "--page-size", "2")
    assert sorted(p["Name"] for p in listed["Parameters"]) == sorted(names)
    out = aws(alice, "ssm", "get-parameter", "--name", f"{base}/zzz", check=False)
    assert out.returncode != 0 and "ParameterNotFound" in out.stderr

    c.delete_parameter(Name=f"{base}/a")
    with pytest.raises(ClientError) as e:
        c.delete_parameter(Name=f"{base}/a")
    assert error_code(e.value) == "ParameterNotFound"
    res = c.delete_parameters(Names=[f"{base}/b", f"{base}/a"])
    assert (res["DeletedParameters"], res["InvalidParameters"]) == ([f"{base}/b"], [f"{base}/a"])
    assert [p["Name"] for p in c.get_parameters_by_path(Path=base)["Parameters"]] == [f"{base}/e"]


def test_accounts_are_isolated(ssm, alice, bob):
    name = unique("/private")
    ssm(alice).put_parameter(Name=name, Value="alice's", Type="String")
    b = ssm(bob)
    with pytest.raises(ClientError) as e:
        b.get_parameter(Name=name)
    assert error_code(e.value) == "ParameterNotFound"
    assert b.get_parameters_by_path(Path=name.rsplit("/", 1)[0], Recursive=True)["Parameters"] == []
    # bob may create his own parameter with the same name; alice's is untouched.
    b.put_parameter(Name=name, Value="bob's", Type="String")
    assert ssm(alice).get_parameter(Name=name)["Parameter"]["Value"] == "alice's"
    assert b.get_parameter(Name=name)["Parameter"]["Value"] == "bob's"
    # regions are separate too
    with pytest.raises(ClientError) as e:
        ssm(alice, region="us-west-2").get_parameter(Name=name)
    assert error_code(e.value) == "ParameterNotFound"


def test_public_parameters(server, ssm, aws, alice, bob):
    name = f"/aws/service/openami-test/{uuid.uuid4().hex[:8]}/latest/amd64"
    first = publish(server, name, "ami-0123456789abcdef0", "--data-type", "aws:ec2:image")
    assert (first["Version"], first["Changed"]) == (1, True)
    again = publish(server, name, "ami-0123456789abcdef0", "--data-type", "aws:ec2:image")
    assert (again["Version"], again["Changed"]) == (1, False)
    for creds in (alice, bob):
        c = ssm(creds)
        p = c.get_parameter(Name=name)["Parameter"]
        assert (p["Value"], p["DataType"]) == ("ami-0123456789abcdef0", "aws:ec2:image")
        assert p["ARN"] == "arn:aws:ssm:us-east-1::parameter" + name
        by_path = aws(creds, "ssm", "get-parameters-by-path", "--path", "/aws/service/openami-test", "--recursive")
        assert name in [p["Name"] for p in by_path["Parameters"]]
        with pytest.raises(ClientError) as e:
            c.put_parameter(Name=name, Value="ami-0123456789abcdef1", Type="String", Overwrite=True)
        assert error_code(e.value) == "AccessDeniedException"
        with pytest.raises(ClientError) as e:
            c.delete_parameter(Name=name)
        assert error_code(e.value) == "AccessDeniedException"
    assert publish(server, name, "ami-0123456789abcdef1", "--data-type", "aws:ec2:image")["Version"] == 2
    assert ssm(bob).get_parameter(Name=f"{name}:1")["Parameter"]["Value"] == "ami-0123456789abcdef0"
    out = subprocess.run([openami_bin(), "ssm", "publish-public", "/not/public", "v",
                          "--data-dir", str(server.data_dir)], capture_output=True, text=True)
    assert out.returncode != 0 and "/aws/service/" in out.stderr


def test_run_instances_resolves_ssm_image_ids(server, ssm, ec2, alice, bob):
    name = unique("/golden")
    ssm(alice).put_parameter(Name=name, Value="ami-00000000000000001", Type="String", DataType="aws:ec2:image")
    ssm(alice).put_parameter(Name=name, Value="ami-00000000000000002", Overwrite=True)

    def launch(creds, image):
        with pytest.raises(ClientError) as e:
            ec2(creds).run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
        return error_code(e.value), e.value.response["Error"]["Message"]

    # Resolved: the launch now fails on the (non-existent) image the parameter names.
    code, message = launch(alice, f"resolve:ssm:{name}")
    assert code == "InvalidAMIID.NotFound" and "ami-00000000000000002" in message
    code, message = launch(alice, f"resolve:ssm:{name}:1")
    assert code == "InvalidAMIID.NotFound" and "ami-00000000000000001" in message
    # Not resolvable: bob cannot read alice's parameter; missing names and versions.
    for creds, ref in [(bob, name), (alice, unique("/none")), (alice, f"{name}:7")]:
        code, message = launch(creds, f"resolve:ssm:{ref}")
        assert code == "InvalidParameterValue" and ref in message, message
    # Public parameters resolve for everyone.
    public = f"/aws/service/openami-test/{uuid.uuid4().hex[:8]}"
    publish(server, public, "ami-00000000000000003", "--data-type", "aws:ec2:image")
    for creds in (alice, bob):
        code, message = launch(creds, f"resolve:ssm:{public}")
        assert code == "InvalidAMIID.NotFound" and "ami-00000000000000003" in message


def test_routing_on_the_signing_service(server, alice):
    def signed(service, target=None, body="{}"):
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target:
            headers["X-Amz-Target"] = target
        req = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=headers)
        SigV4Auth(Credentials(alice["AccessKeyId"], alice["SecretAccessKey"]), service, "us-east-1").add_auth(req)
        return send("POST", req.url, body, dict(req.headers))

    status, body = signed("ssm", "AmazonSSM.SendCommand")
    assert status == 400 and json.loads(body)["__type"] == "InvalidAction"
    status, body = signed("ssm", "AmazonSSM.GetParameter", body="{")
    assert status == 400 and json.loads(body)["__type"] == "SerializationException"
    # Auto Scaling is served beside them, in the query protocol's envelope.
    status, body = signed("autoscaling", body="Action=DescribeAutoScalingGroups&Version=2011-01-01")
    error = ET.fromstring(body).find("{*}Error")
    assert status == 400 and error.findtext("{*}Type") == "Sender", body
    # A service openami does not serve is refused naming the ones it does.
    status, body = signed("sqs", body="Action=ListQueues&Version=2012-11-05")
    error = ET.fromstring(body).find("Errors/Error")
    assert status == 403 and error.findtext("Code") == "SignatureDoesNotMatch"
    message = error.findtext("Message")
    assert "'sqs'" in message and "ec2, ssm, autoscaling, elasticloadbalancing" in message, message
    # A wrong secret is refused in the JSON protocol's words.
    req = AWSRequest(method="POST", url=server.endpoint + "/", data="{}",
                     headers={"X-Amz-Target": "AmazonSSM.DescribeParameters",
                              "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(alice["AccessKeyId"], "wrong" * 8), "ssm", "us-east-1").add_auth(req)
    status, body = send("POST", req.url, "{}", dict(req.headers))
    assert status in (400, 403) and json.loads(body)["__type"] == "InvalidSignatureException"

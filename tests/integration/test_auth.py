"""SigV4 at the HTTP level: header and presigned forms, and every way a request can fail
to authenticate, each with its AWS error code."""

import datetime
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import error_code

BODY = "Action=DescribeRegions&Version=2016-11-15"


def send(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body.encode() if body is not None else None,
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def signed(server, creds, region="us-east-1", service="ec2", body=BODY, secret=None, when=None):
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    auth = SigV4Auth(Credentials(creds["AccessKeyId"], secret or creds["SecretAccessKey"]), service, region)
    if when is not None:
        # botocore reads the clock inside add_auth; sign with a fixed timestamp instead.
        import botocore.auth as ba
        real = ba.datetime.datetime
        class Fixed(real):
            @classmethod
            def utcnow(cls):
                return when
            @classmethod
            def now(cls, tz=None):
                return when.replace(tzinfo=tz) if tz else when
        ba.datetime.datetime = Fixed
        try:
            auth.add_auth(req)
        finally:
            ba.datetime.datetime = real
    else:
        auth.add_auth(req)
    return dict(req.headers.items())


def code_of(text):
    root = ET.fromstring(text)
    return root.find("./Errors/Error/Code").text, root.find("./RequestID").text


def test_signed_post_works_and_response_is_ec2_xml(server, alice):
    status, text = send("POST", server.endpoint + "/", BODY, signed(server, alice))
    assert status == 200, text
    root = ET.fromstring(text)
    assert root.tag == "{http://ec2.amazonaws.com/doc/2016-11-15/}DescribeRegionsResponse"
    assert root.find("{http://ec2.amazonaws.com/doc/2016-11-15/}requestId").text


@pytest.mark.parametrize("mutate,code,status", [
    (lambda h: {k: v for k, v in h.items() if k != "Authorization"}, "MissingAuthenticationToken", 403),
    (lambda h: {**h, "Authorization": h["Authorization"][:-4] + "0000"}, "SignatureDoesNotMatch", 403),
    (lambda h: {**h, "Authorization": "AWS4-HMAC-SHA256 garbage"}, "IncompleteSignature", 400),
])
def test_header_tampering(server, alice, mutate, code, status):
    got_status, text = send("POST", server.endpoint + "/", BODY, mutate(signed(server, alice)))
    got_code, request_id = code_of(text)
    assert (got_code, got_status) == (code, status)
    assert request_id
    assert alice["SecretAccessKey"] not in text


def test_tampered_body_is_refused(server, alice):
    headers = signed(server, alice)
    status, text = send("POST", server.endpoint + "/", BODY.replace("Regions", "Volumes"), headers)
    assert code_of(text)[0] == "SignatureDoesNotMatch"


def test_unknown_key_wrong_secret_wrong_region_wrong_service(server, alice):
    bogus = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "x" * 40}
    assert code_of(send("POST", server.endpoint + "/", BODY, signed(server, bogus))[1])[0] == "AuthFailure"
    assert code_of(send("POST", server.endpoint + "/", BODY, signed(server, alice, secret="y" * 40))[1])[0] == "SignatureDoesNotMatch"
    status, text = send("POST", server.endpoint + "/", BODY, signed(server, alice, region="mars-north-1"))
    assert code_of(text)[0] == "AuthFailure" and "mars-north-1" in text
    status, text = send("POST", server.endpoint + "/", BODY, signed(server, alice, service="s3"))
    assert code_of(text)[0] in ("SignatureDoesNotMatch", "IncompleteSignature")


def test_clock_skew_is_refused(server, alice):
    old = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
    status, text = send("POST", server.endpoint + "/", BODY, signed(server, alice, when=old))
    assert code_of(text)[0] == "RequestExpired"
    near = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
    assert send("POST", server.endpoint + "/", BODY, signed(server, alice, when=near))[0] == 200


def test_presigned_get(server, alice):
    url = server.endpoint + "/?Action=DescribeAvailabilityZones&Version=2016-11-15"
    req = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(alice["AccessKeyId"], alice["SecretAccessKey"]), "ec2", "eu-west-1", expires=60).add_auth(req)
    status, text = send("GET", req.url)
    assert status == 200, text
    assert "eu-west-1a" in text
    tampered = req.url.replace("DescribeAvailabilityZones", "DescribeRegions")
    assert code_of(send("GET", tampered)[1])[0] == "SignatureDoesNotMatch"


def test_action_errors(server, alice, ec2):
    def call(body):
        return send("POST", server.endpoint + "/", body, signed(server, alice, body=body))
    status, text = call("Action=NoSuchThing&Version=2016-11-15")
    assert (status, code_of(text)[0]) == (400, "InvalidAction")
    status, text = call("Action=RunScheduledInstances&Version=2016-11-15")
    assert code_of(text)[0] == "UnsupportedOperation"
    assert code_of(call("Version=2016-11-15")[1])[0] == "MissingParameter"
    assert code_of(call("Action=DescribeRegions")[1])[0] == "MissingParameter"
    status, text = call("Action=DescribeVolumes&Version=2016-11-15&DryRun=true")
    assert (status, code_of(text)[0]) == (412, "DryRunOperation")
    status, text = call("Action=DescribeVolumes&Version=2016-11-15&MaxResults=abc")
    assert code_of(text)[0] == "InvalidParameterValue"
    # boto3 surfaces the same codes.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2(alice).describe_volumes(DryRun=True)
    assert error_code(e.value) == "DryRunOperation"


def test_huge_body_is_refused_without_harm(server, alice):
    body = BODY + "&Junk=" + "a" * (2 << 20)
    status, _ = send("POST", server.endpoint + "/", body, signed(server, alice, body=body))
    assert status == 413
    assert send("POST", server.endpoint + "/", BODY, signed(server, alice))[0] == 200

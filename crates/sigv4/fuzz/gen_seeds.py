"""Writes seeds/verify/: requests signed by botocore's own SigV4 signers (header and
presigned query) at the fuzz target's fixed clock. Run: python3 gen_seeds.py"""
import datetime
import hashlib
import os
from unittest import mock

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

NOW = datetime.datetime(2015, 8, 30, 12, 36, 0)
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "verify")


def render(flags, req, body):
    from urllib.parse import urlsplit
    u = urlsplit(req.url)
    lines = [req.method, u.path or "/", "?" + u.query]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return bytes([flags]) + ("\n".join(lines) + "\n\n").encode() + body


def sign(name, flags, service, method, url, body=b"", query_auth=False, headers=None):
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        if query_auth:
            SigV4QueryAuth(CREDS, service, "us-east-1", expires=300).add_auth(req)
        else:
            SigV4Auth(CREDS, service, "us-east-1").add_auth(req)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(render(flags, req, body))


form = b"Action=DescribeImages&Version=2016-11-15&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=web%2A"
sign("ec2-header", 0, "ec2", "POST", "http://127.0.0.1:8080/", form,
     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Host": "127.0.0.1:8080"})
sign("ec2-presigned", 0, "ec2", "GET",
     "http://127.0.0.1:8080/?Action=DescribeRegions&Version=2016-11-15", query_auth=True,
     headers={"Host": "127.0.0.1:8080"})
data = b"\x01" * 64
sign("ebs-put-block", 1, "ebs", "PUT",
     "http://127.0.0.1:8080/snapshots/snap-0123456789abcdef0/blocks/3", data,
     headers={"Host": "127.0.0.1:8080", "x-amz-Data-Length": "64",
              "x-amz-Checksum": "AQ==", "x-amz-Checksum-Algorithm": "SHA256",
              "X-Amz-Content-SHA256": hashlib.sha256(data).hexdigest()})
sign("ebs-list", 1, "ebs", "GET",
     "http://127.0.0.1:8080/snapshots/snap-0123456789abcdef0/blocks?maxResults=100",
     headers={"Host": "127.0.0.1:8080"})

"""Writes seeds/: EC2 form bodies serialized by botocore's own ec2 serializer
(seeds/ec2_params/) and EBS direct requests as botocore builds them (seeds/ebs_request/).
Run: python3 gen_seeds.py"""
import json
import os

import botocore.session
from botocore.serialize import create_serializer

HERE = os.path.dirname(os.path.abspath(__file__))
session = botocore.session.get_session()


def write(target, name, data):
    os.makedirs(os.path.join(HERE, "seeds", target), exist_ok=True)
    with open(os.path.join(HERE, "seeds", target, name), "wb") as f:
        f.write(data)


ec2 = session.get_service_model("ec2")
CALLS = [
    ("DescribeImages", {"Owners": ["self", "123456789012"], "ImageIds": ["ami-1"],
                        "Filters": [{"Name": "name", "Values": ["web*", "db?"]},
                                    {"Name": "tag:env", "Values": ["prod"]}],
                        "MaxResults": 10, "NextToken": "abc"}),
    ("RunInstances", {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 2, "InstanceType": "t3.micro",
                      "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "DeleteOnTermination": True}}],
                      "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "a"}]}],
                      "SecurityGroupIds": ["sg-1"], "UserData": "aGk="}),
    ("CreateTags", {"Resources": ["i-1", "vol-1"], "Tags": [{"Key": "k", "Value": "v"}, {"Key": "e", "Value": ""}]}),
    ("DeleteTags", {"Resources": ["i-1"], "Tags": [{"Key": "k"}]}),
    ("ModifyImageAttribute", {"ImageId": "ami-1", "LaunchPermission": {"Add": [{"UserId": "111122223333"}], "Remove": [{"Group": "all"}]}}),
    ("AuthorizeSecurityGroupIngress", {"GroupId": "sg-1", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "ssh"}]}]}),
]
for op, args in CALLS:
    ser = create_serializer(ec2.metadata["protocol"])
    req = ser.serialize_to_request(args, ec2.operation_model(op))
    body = req["body"]
    if isinstance(body, dict):
        from urllib.parse import urlencode
        body = urlencode(body)
    write("ec2_params", op, body.encode() if isinstance(body, str) else body)

ebs = session.get_service_model("ebs")
REQS = [
    ("StartSnapshot", {"VolumeSize": 8, "ParentSnapshotId": "snap-0123456789abcdef0", "Description": "d",
                       "ClientToken": "tok", "Timeout": 60, "Encrypted": False,
                       "Tags": [{"Key": "k", "Value": "v"}]}),
    ("PutSnapshotBlock", {"SnapshotId": "snap-1", "BlockIndex": 3, "BlockData": b"x" * 16, "DataLength": 16,
                          "Checksum": "AQ==", "ChecksumAlgorithm": "SHA256"}),
    ("CompleteSnapshot", {"SnapshotId": "snap-1", "ChangedBlocksCount": 2, "Checksum": "AQ==",
                          "ChecksumAlgorithm": "SHA256", "ChecksumAggregationMethod": "LINEAR"}),
    ("ListSnapshotBlocks", {"SnapshotId": "snap-1", "MaxResults": 100, "NextToken": "t", "StartingBlockIndex": 5}),
    ("ListChangedBlocks", {"SecondSnapshotId": "snap-2", "FirstSnapshotId": "snap-1", "MaxResults": 100}),
    ("GetSnapshotBlock", {"SnapshotId": "snap-1", "BlockIndex": 7, "BlockToken": "tok/en+=="}),
]
for op, args in REQS:
    ser = create_serializer(ebs.metadata["protocol"])
    req = ser.serialize_to_request(args, ebs.operation_model(op))
    from urllib.parse import urlencode
    target = req["url_path"] + ("?" + urlencode(req["query_string"]) if req["query_string"] else "")
    body = req["body"]
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    head = [req["method"], target] + [f"{k}: {v}" for k, v in req["headers"].items()]
    write("ebs_request", op, ("\n".join(head) + "\n\n").encode() + (body or b""))

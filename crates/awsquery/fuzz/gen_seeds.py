"""Writes seeds/params/: form bodies serialized by botocore's own query serializer for
the query-protocol services openami serves (ELBv2, Auto Scaling). Run: python3 gen_seeds.py"""
import os

import botocore.session
from botocore.serialize import create_serializer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "params")
session = botocore.session.get_session()

CALLS = [
    ("elbv2", "CreateLoadBalancer", {"Name": "web", "Subnets": ["subnet-1", "subnet-2"],
                                     "SecurityGroups": ["sg-1"],
                                     "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "k"}]}),
    ("elbv2", "CreateTargetGroup", {"Name": "tg", "Protocol": "HTTP", "Port": 80,
                                    "VpcId": "vpc-1", "HealthCheckIntervalSeconds": 10,
                                    "Matcher": {"HttpCode": "200-299"}}),
    ("elbv2", "RegisterTargets", {"TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/1",
                                  "Targets": [{"Id": "i-1", "Port": 8080}, {"Id": "i-2"}]}),
    ("elbv2", "ModifyLoadBalancerAttributes", {"LoadBalancerArn": "arn:x",
                                               "Attributes": [{"Key": "idle_timeout.timeout_seconds", "Value": "60"}]}),
    ("autoscaling", "CreateAutoScalingGroup", {"AutoScalingGroupName": "asg", "MinSize": 1, "MaxSize": 3,
                                               "DesiredCapacity": 2,
                                               "LaunchTemplate": {"LaunchTemplateName": "web-lt", "Version": "$Latest"},
                                               "VPCZoneIdentifier": "subnet-1,subnet-2",
                                               "Tags": [{"Key": "Name", "Value": "x", "PropagateAtLaunch": True}]}),
    ("autoscaling", "PutScalingPolicy", {"AutoScalingGroupName": "asg", "PolicyName": "p",
                                         "PolicyType": "TargetTrackingScaling",
                                         "TargetTrackingConfiguration": {"TargetValue": 50.5,
                                             "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"}}}),
]

for service, op, args in CALLS:
    model = session.get_service_model(service)
    ser = create_serializer(model.metadata["protocol"])
    req = ser.serialize_to_request(args, model.operation_model(op))
    body = req["body"]
    if isinstance(body, dict):
        from urllib.parse import urlencode
        body = urlencode(body)
    if isinstance(body, str):
        body = body.encode()
    with open(os.path.join(OUT, f"{service}-{op}"), "wb") as f:
        f.write(body)
# A query string and a body (NUL-separated), the body repeating a name the query sets.
with open(os.path.join(OUT, "query-and-body"), "wb") as f:
    f.write(b"Action=DescribeTags&Version=2011-01-01\0Action=Other&Filters.member.1.Name=key"
            b"&Filters.member.1.Values.member.1=a%20b&Map.entry.1.key=k&Map.entry.1.value=v&MaxRecords=50")

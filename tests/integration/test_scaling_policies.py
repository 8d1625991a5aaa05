"""Auto Scaling policies and scheduled actions through boto3's `autoscaling` client:
PutScalingPolicy (simple, step, target tracking; alarms), DescribePolicies round-tripping
every field (Enabled included: Terraform compares it), DeletePolicy, ExecutePolicy with
cooldowns, scheduled actions (validation, updates, batches, one that fires), and their
survival of a kill -9 of openami.

No VM is started by the API tests: groups have the Launch process suspended, so a changed
desired capacity is observed on the group without launching anything. One test boots a real
guest that burns its vCPU and watches target tracking on ASGAverageCPUUtilization scale the
group out (a private openami with 5-second metric periods).
"""

import datetime
import json
import signal
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, Server, error_code
from test_autoscaling import force_delete, in_service
from test_instances import guest_raw, needs_qemu, upload  # noqa: F401


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_group(ec2, creds, desired=0, max_size=5, **kwargs):
    client, asg = ec2(creds), ec2(creds, service="autoscaling")
    lt = client.create_launch_template(
        LaunchTemplateName=name("lt"),
        LaunchTemplateData={"ImageId": "ami-12345678901234567", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    g = name("pol")
    asg.create_auto_scaling_group(
        AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"]},
        MinSize=0, MaxSize=max_size, DesiredCapacity=0, AvailabilityZones=["us-east-1a"], **kwargs)
    # Nothing launches: policies change the desired capacity only.
    asg.suspend_processes(AutoScalingGroupName=g, ScalingProcesses=["Launch"])
    if desired:
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=desired)
    return asg, g


def desired(asg, g):
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]["DesiredCapacity"]


def sizes(asg, g):
    grp = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    return grp["MinSize"], grp["MaxSize"], grp["DesiredCapacity"]


def policy(asg, g, pname):
    found = asg.describe_policies(AutoScalingGroupName=g, PolicyNames=[pname])["ScalingPolicies"]
    assert len(found) == 1
    return found[0]


def test_put_and_describe_round_trip_every_field(ec2, alice):
    asg, g = make_group(ec2, alice)

    out = asg.put_scaling_policy(
        AutoScalingGroupName=g, PolicyName="cpu50", PolicyType="TargetTrackingScaling", Enabled=True,
        EstimatedInstanceWarmup=120,
        TargetTrackingConfiguration={"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                                     "TargetValue": 50.0, "DisableScaleIn": False})
    arn = out["PolicyARN"]
    assert arn.startswith("arn:aws:autoscaling:us-east-1:") and ":scalingPolicy:" in arn
    assert arn.endswith(f":autoScalingGroupName/{g}:policyName/cpu50")
    names = sorted(a["AlarmName"] for a in out["Alarms"])
    assert len(names) == 2
    assert names[0].startswith(f"TargetTracking-{g}-AlarmHigh-") and names[1].startswith(f"TargetTracking-{g}-AlarmLow-")
    assert names[0].split("AlarmHigh-")[1] == names[1].split("AlarmLow-")[1]
    for a in out["Alarms"]:
        assert a["AlarmARN"].startswith("arn:aws:cloudwatch:us-east-1:") and a["AlarmARN"].endswith(":alarm:" + a["AlarmName"])

    p = policy(asg, g, "cpu50")
    assert p["PolicyARN"] == arn and p["AutoScalingGroupName"] == g and p["PolicyType"] == "TargetTrackingScaling"
    assert p["Enabled"] is True and p["EstimatedInstanceWarmup"] == 120
    assert p["TargetTrackingConfiguration"] == {
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
        "TargetValue": 50.0, "DisableScaleIn": False}
    assert sorted(a["AlarmName"] for a in p["Alarms"]) == names
    assert "Cooldown" not in p and "AdjustmentType" not in p

    # Replacing (same name) keeps the ARN and the alarms' id; DisableScaleIn drops the low alarm.
    again = asg.put_scaling_policy(
        AutoScalingGroupName=g, PolicyName="cpu50", PolicyType="TargetTrackingScaling", Enabled=False,
        TargetTrackingConfiguration={"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                                     "TargetValue": 40.0, "DisableScaleIn": True})
    assert again["PolicyARN"] == arn and [a["AlarmName"] for a in again["Alarms"]] == [names[0]]
    p = policy(asg, g, "cpu50")
    assert p["Enabled"] is False and p["TargetTrackingConfiguration"]["TargetValue"] == 40.0
    assert p["TargetTrackingConfiguration"]["DisableScaleIn"] is True

    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="simple", AdjustmentType="PercentChangeInCapacity",
                           ScalingAdjustment=25, MinAdjustmentMagnitude=2, Cooldown=120, Enabled=False)
    p = policy(asg, g, "simple")
    assert (p["PolicyType"], p["AdjustmentType"], p["ScalingAdjustment"], p["MinAdjustmentMagnitude"],
            p["Cooldown"], p["Enabled"], p["Alarms"]) == ("SimpleScaling", "PercentChangeInCapacity", 25, 2, 120, False, [])

    steps = [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1},
             {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 15.5, "ScalingAdjustment": 1},
             {"MetricIntervalLowerBound": 15.5, "ScalingAdjustment": 2}]
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="steps", PolicyType="StepScaling",
                           AdjustmentType="ChangeInCapacity", StepAdjustments=steps,
                           MetricAggregationType="Maximum", EstimatedInstanceWarmup=60)
    p = policy(asg, g, "steps")
    assert p["StepAdjustments"] == steps and p["MetricAggregationType"] == "Maximum"
    assert p["EstimatedInstanceWarmup"] == 60 and p["Enabled"] is True

    custom = {"MetricName": "QueueDepth", "Namespace": "App", "Statistic": "Average", "Unit": "Count",
              "Dimensions": [{"Name": "queue", "Value": "jobs"}, {"Name": "env", "Value": "prod"}]}
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="custom", PolicyType="TargetTrackingScaling",
                           TargetTrackingConfiguration={"CustomizedMetricSpecification": custom, "TargetValue": 10.0})
    assert policy(asg, g, "custom")["TargetTrackingConfiguration"]["CustomizedMetricSpecification"] == custom

    # Filters and pages.
    all_names = [p["PolicyName"] for p in asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"]]
    assert sorted(all_names) == ["cpu50", "custom", "simple", "steps"]
    tt = asg.describe_policies(AutoScalingGroupName=g, PolicyTypes=["TargetTrackingScaling"])["ScalingPolicies"]
    assert sorted(p["PolicyName"] for p in tt) == ["cpu50", "custom"]
    assert asg.describe_policies(PolicyNames=[arn])["ScalingPolicies"][0]["PolicyName"] == "cpu50"
    pages = list(asg.get_paginator("describe_policies").paginate(AutoScalingGroupName=g,
                                                                 PaginationConfig={"PageSize": 3}))
    assert [len(pg["ScalingPolicies"]) for pg in pages] == [3, 1]
    with pytest.raises(ClientError) as e:
        asg.describe_policies(NextToken="nonsense")
    assert error_code(e.value) == "InvalidNextToken"

    # Deletion, by name and by ARN.
    asg.delete_policy(AutoScalingGroupName=g, PolicyName="simple")
    asg.delete_policy(PolicyName=arn)
    assert sorted(p["PolicyName"] for p in asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"]) == \
        ["custom", "steps"]
    with pytest.raises(ClientError) as e:
        asg.delete_policy(AutoScalingGroupName=g, PolicyName="simple")
    assert error_code(e.value) == "ValidationError" and "not found" in str(e.value)

    # The group's deletion takes its policies along; a new group of that name starts empty.
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)
    ec2_client = ec2(alice)
    lt = ec2_client.create_launch_template(LaunchTemplateName=name("lt"),
                                           LaunchTemplateData={"ImageId": "ami-12345678901234567"})["LaunchTemplate"]
    asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"]},
                                  MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"])
    assert asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"] == []
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)


def test_bad_policies_are_refused(ec2, alice, bob):
    asg, g = make_group(ec2, alice)
    cases = [
        (dict(AutoScalingGroupName="no-such-group", PolicyName="p", AdjustmentType="ChangeInCapacity",
              ScalingAdjustment=1), "AutoScalingGroup name not found"),
        (dict(AutoScalingGroupName=g, PolicyName="p", ScalingAdjustment=1), "AdjustmentType is required"),
        (dict(AutoScalingGroupName=g, PolicyName="p", AdjustmentType="ChangeInCapacity"), "ScalingAdjustment is required"),
        (dict(AutoScalingGroupName=g, PolicyName="p", AdjustmentType="ChangeInCapacity", ScalingAdjustment=1,
              MinAdjustmentMagnitude=2), "PercentChangeInCapacity"),
        (dict(AutoScalingGroupName=g, PolicyName="p", PolicyType="StepScaling", AdjustmentType="ChangeInCapacity",
              StepAdjustments=[{"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 5, "ScalingAdjustment": 1},
                               {"MetricIntervalLowerBound": 10, "ScalingAdjustment": 2}]), "gaps"),
        (dict(AutoScalingGroupName=g, PolicyName="p", PolicyType="TargetTrackingScaling",
              TargetTrackingConfiguration={"PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"},
                                           "TargetValue": 100}), "ResourceLabel is required"),
        (dict(AutoScalingGroupName=g, PolicyName="p", PolicyType="TargetTrackingScaling",
              TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                  "PredefinedMetricType": "ALBRequestCountPerTarget",
                  "ResourceLabel": "app/lb/0123456789abcdef/targetgroup/tg/0123456789abcdef"},
                  "TargetValue": 100}), "not attached"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ClientError) as e:
            asg.put_scaling_policy(**kwargs)
        assert error_code(e.value) == "ValidationError", kwargs
        assert message in str(e.value), (kwargs, str(e.value))
    with pytest.raises(ClientError) as e:
        asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="p", PolicyType="PredictiveScaling",
                               PredictiveScalingConfiguration={"MetricSpecifications": [{
                                   "TargetValue": 50, "PredefinedMetricPairSpecification": {
                                       "PredefinedMetricType": "ASGCPUUtilization"}}]})
    assert error_code(e.value) == "UnsupportedOperation"
    assert asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"] == []
    # Another account sees neither the group nor its policies.
    other = ec2(bob, service="autoscaling")
    with pytest.raises(ClientError) as e:
        other.describe_policies(AutoScalingGroupName=g)
    assert "not found" in str(e.value)
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)


def test_execute_policy_changes_desired_and_honours_cooldown(ec2, alice):
    asg, g = make_group(ec2, alice, desired=1, max_size=6)
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="up2", AdjustmentType="ChangeInCapacity",
                           ScalingAdjustment=2, Cooldown=300)
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="quick", AdjustmentType="ChangeInCapacity",
                           ScalingAdjustment=1, Cooldown=0)
    # The SetDesiredCapacity just before started a cooldown: 0 s for "quick", 300 s for "up2".
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="quick", HonorCooldown=True)
    assert desired(asg, g) == 2
    with pytest.raises(ClientError) as e:
        asg.execute_policy(AutoScalingGroupName=g, PolicyName="up2", HonorCooldown=True)
    assert error_code(e.value) == "ScalingActivityInProgress"
    assert desired(asg, g) == 2
    # Without HonorCooldown it runs, and stops at MaxSize.
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="up2")
    assert desired(asg, g) == 4
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="up2")
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="up2")
    assert desired(asg, g) == 6

    # -50 % of 6 = -3; -10 % of 3 = -0.3 → -1.
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="half", AdjustmentType="PercentChangeInCapacity",
                           ScalingAdjustment=-50)
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="half")
    assert desired(asg, g) == 3
    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="tenth", AdjustmentType="PercentChangeInCapacity",
                           ScalingAdjustment=-10)
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="tenth")
    assert desired(asg, g) == 2

    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="steps", PolicyType="StepScaling",
                           AdjustmentType="ExactCapacity",
                           StepAdjustments=[{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 1},
                                            {"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 20, "ScalingAdjustment": 4},
                                            {"MetricIntervalLowerBound": 20, "ScalingAdjustment": 5}])
    with pytest.raises(ClientError) as e:
        asg.execute_policy(AutoScalingGroupName=g, PolicyName="steps")
    assert error_code(e.value) == "ValidationError" and "MetricValue" in str(e.value)
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="steps", MetricValue=75, BreachThreshold=60)
    assert desired(asg, g) == 4
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="steps", MetricValue=95, BreachThreshold=60)
    assert desired(asg, g) == 5
    asg.execute_policy(AutoScalingGroupName=g, PolicyName="steps", MetricValue=10, BreachThreshold=60)
    assert desired(asg, g) == 1

    asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="tt", PolicyType="TargetTrackingScaling",
                           TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                               "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 50})
    with pytest.raises(ClientError) as e:
        asg.execute_policy(AutoScalingGroupName=g, PolicyName="tt")
    assert error_code(e.value) == "ValidationError"
    with pytest.raises(ClientError) as e:
        asg.execute_policy(AutoScalingGroupName=g, PolicyName="missing")
    assert error_code(e.value) == "ValidationError" and "not found" in str(e.value)
    asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0, MaxSize=0, DesiredCapacity=0)
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


def test_scheduled_actions(ec2, alice):
    asg, g = make_group(ec2, alice, max_size=4)
    with pytest.raises(ClientError) as e:
        asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="old",
                                              StartTime=iso(time.time() - 3600), DesiredCapacity=1)
    assert error_code(e.value) == "ValidationError" and "Given start time is in the past" in str(e.value)
    with pytest.raises(ClientError) as e:
        asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="bad",
                                              Recurrence="0 25 * * *", MinSize=1)
    assert error_code(e.value) == "ValidationError"
    with pytest.raises(ClientError) as e:
        asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="paris",
                                              Recurrence="0 9 * * *", TimeZone="Europe/Paris", MinSize=1)
    assert error_code(e.value) == "ValidationError" and "Europe/Paris" in str(e.value)
    with pytest.raises(ClientError) as e:
        asg.put_scheduled_update_group_action(AutoScalingGroupName="no-such-group", ScheduledActionName="x",
                                              Recurrence="0 9 * * *", MinSize=1)
    assert "AutoScalingGroup name not found" in str(e.value)

    asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="nightly",
                                          Recurrence="0 2 * * *", MinSize=0, MaxSize=3, TimeZone="Etc/UTC")
    a = asg.describe_scheduled_actions(AutoScalingGroupName=g)["ScheduledUpdateGroupActions"][0]
    assert a["ScheduledActionName"] == "nightly" and a["Recurrence"] == "0 2 * * *" and a["TimeZone"] == "Etc/UTC"
    assert ":scheduledUpdateGroupAction:" in a["ScheduledActionARN"]
    assert a["ScheduledActionARN"].endswith(f":autoScalingGroupName/{g}:scheduledActionName/nightly")
    assert (a["StartTime"].hour, a["StartTime"].minute) == (2, 0) and a["StartTime"] > iso(time.time())
    assert (a["MinSize"], a["MaxSize"]) == (0, 3) and "DesiredCapacity" not in a
    # An update keeps what it does not mention.
    asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="nightly", DesiredCapacity=2)
    a = asg.describe_scheduled_actions(ScheduledActionNames=["nightly"])["ScheduledUpdateGroupActions"][0]
    assert (a["MinSize"], a["MaxSize"], a["DesiredCapacity"], a["Recurrence"]) == (0, 3, 2, "0 2 * * *")

    out = asg.batch_put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledUpdateGroupActions=[
        {"ScheduledActionName": "weekday", "Recurrence": "30 8 * * MON-FRI", "DesiredCapacity": 1},
        {"ScheduledActionName": "late", "StartTime": iso(time.time() - 60), "DesiredCapacity": 1}])
    assert [(f["ScheduledActionName"], f["ErrorCode"]) for f in out["FailedScheduledUpdateGroupActions"]] == \
        [("late", "ValidationError")]
    out = asg.batch_delete_scheduled_action(AutoScalingGroupName=g, ScheduledActionNames=["weekday", "ghost"])
    assert [f["ScheduledActionName"] for f in out["FailedScheduledActions"]] == ["ghost"]
    asg.delete_scheduled_action(AutoScalingGroupName=g, ScheduledActionName="nightly")
    with pytest.raises(ClientError) as e:
        asg.delete_scheduled_action(AutoScalingGroupName=g, ScheduledActionName="nightly")
    assert error_code(e.value) == "ValidationError" and "not found" in str(e.value)
    assert asg.describe_scheduled_actions(AutoScalingGroupName=g)["ScheduledUpdateGroupActions"] == []

    # A one-time action a few seconds ahead changes the group's sizes, then is gone.
    asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="soon",
                                          StartTime=iso(time.time() + 4), MinSize=1, MaxSize=4, DesiredCapacity=3)
    deadline = time.time() + 30
    while time.time() < deadline and sizes(asg, g) != (1, 4, 3):
        time.sleep(0.5)
    assert sizes(asg, g) == (1, 4, 3)
    assert asg.describe_scheduled_actions(AutoScalingGroupName=g)["ScheduledUpdateGroupActions"] == []

    # A recurring action fires at the next minute and stays scheduled.
    asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="every-minute",
                                          Recurrence="* * * * *", DesiredCapacity=2)
    deadline = time.time() + 75
    while time.time() < deadline and desired(asg, g) != 2:
        time.sleep(1)
    assert desired(asg, g) == 2
    left = asg.describe_scheduled_actions(AutoScalingGroupName=g)["ScheduledUpdateGroupActions"]
    assert [a["ScheduledActionName"] for a in left] == ["every-minute"]
    assert left[0]["StartTime"] > iso(time.time() - 1)
    asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0, MaxSize=0, DesiredCapacity=0)
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)


def test_policies_and_actions_survive_a_kill(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        creds = srv.create_account("pol-restart")

        def ec2(c, service="ec2"):
            return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                                aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                                config=Config(retries={"max_attempts": 1}))
        asg, g = make_group(ec2, creds)
        arn = asg.put_scaling_policy(AutoScalingGroupName=g, PolicyName="up", AdjustmentType="ChangeInCapacity",
                                     ScalingAdjustment=1, Enabled=False)["PolicyARN"]
        asg.put_scheduled_update_group_action(AutoScalingGroupName=g, ScheduledActionName="n",
                                              Recurrence="0 3 * * *", MaxSize=2)
        before = asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"]
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.log.close()
        srv = Server(srv.data_dir, port=srv.port)
        assert asg.describe_policies(AutoScalingGroupName=g)["ScalingPolicies"] == before
        assert before[0]["PolicyARN"] == arn and before[0]["Enabled"] is False
        a = asg.describe_scheduled_actions(AutoScalingGroupName=g)["ScheduledUpdateGroupActions"]
        assert [(x["ScheduledActionName"], x["Recurrence"], x["MaxSize"]) for x in a] == [("n", "0 3 * * *", 2)]
    finally:
        if srv.proc.poll() is None:
            srv.stop()


def test_aws_cli(ec2, alice, aws):
    asg, g = make_group(ec2, alice, desired=1)
    out = aws(alice, "autoscaling", "put-scaling-policy", "--auto-scaling-group-name", g, "--policy-name", "cli-tt",
              "--policy-type", "TargetTrackingScaling", "--target-tracking-configuration",
              json.dumps({"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                          "TargetValue": 60.0}))
    assert out["PolicyARN"].endswith(f":autoScalingGroupName/{g}:policyName/cli-tt") and len(out["Alarms"]) == 2
    aws(alice, "autoscaling", "put-scaling-policy", "--auto-scaling-group-name", g, "--policy-name", "cli-up",
        "--adjustment-type", "ExactCapacity", "--scaling-adjustment", "3")
    aws(alice, "autoscaling", "execute-policy", "--auto-scaling-group-name", g, "--policy-name", "cli-up")
    assert desired(asg, g) == 3
    listed = aws(alice, "autoscaling", "describe-policies", "--auto-scaling-group-name", g)["ScalingPolicies"]
    assert sorted((p["PolicyName"], p["PolicyType"], p["Enabled"]) for p in listed) == \
        [("cli-tt", "TargetTrackingScaling", True), ("cli-up", "SimpleScaling", True)]
    aws(alice, "autoscaling", "put-scheduled-update-group-action", "--auto-scaling-group-name", g,
        "--scheduled-action-name", "cli-s", "--recurrence", "15 4 * * SUN", "--max-size", "4")
    acts = aws(alice, "autoscaling", "describe-scheduled-actions", "--auto-scaling-group-name", g)
    assert [(a["ScheduledActionName"], a["Recurrence"]) for a in acts["ScheduledUpdateGroupActions"]] == \
        [("cli-s", "15 4 * * SUN")]
    bad = aws(alice, "autoscaling", "delete-policy", "--auto-scaling-group-name", g, "--policy-name", "nope", check=False)
    assert bad.returncode != 0 and "ValidationError" in bad.stderr
    aws(alice, "autoscaling", "delete-policy", "--auto-scaling-group-name", g, "--policy-name", "cli-tt")
    aws(alice, "autoscaling", "delete-scheduled-action", "--auto-scaling-group-name", g, "--scheduled-action-name", "cli-s")
    asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0, MaxSize=0, DesiredCapacity=0)
    asg.delete_auto_scaling_group(AutoScalingGroupName=g)


BUSY_USER_DATA = """#!/bin/sh
while :; do :; done &
while :; do sleep 3600; done
"""


@needs_qemu
def test_target_tracking_on_cpu_scales_out_and_back_in(tmp_path, guest_raw):  # noqa: F811
    import base64
    import os

    env_keys = {"OPENAMI_ASG_METRIC_PERIOD_SECONDS": "5", "OPENAMI_ASG_SCALE_OUT_PERIODS": "2",
                "OPENAMI_ASG_SCALE_IN_PERIODS": "3"}
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    try:
        srv = Server(tmp_path / "data")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client = asg = None
    try:
        creds = srv.create_account("pol-cpu")

        def make(service):
            return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                config=Config(retries={"max_attempts": 1}))
        client, asg = make("ec2"), make("autoscaling")
        snap = upload(srv, creds, guest_raw)
        client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
        image = client.register_image(Name="busy", RootDeviceName="/dev/xvda", Architecture="x86_64",
                                      BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                                            "Ebs": {"SnapshotId": snap}}])["ImageId"]
        lt = client.create_launch_template(
            LaunchTemplateName="busy", LaunchTemplateData={
                "ImageId": image, "InstanceType": "t3.micro",
                "UserData": base64.b64encode(BUSY_USER_DATA.encode()).decode()})["LaunchTemplate"]
        asg.create_auto_scaling_group(AutoScalingGroupName="busy", LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"]},
                                      MinSize=1, MaxSize=2, AvailabilityZones=["us-east-1a"], DefaultInstanceWarmup=0)
        in_service(asg, "busy", 1)
        asg.put_scaling_policy(
            AutoScalingGroupName="busy", PolicyName="cpu20", PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 20.0})
        deadline = time.time() + 180
        while time.time() < deadline and desired(asg, "busy") != 2:
            time.sleep(1)
        assert desired(asg, "busy") == 2, "a guest spinning its vCPU is above 20 %"
        # The launch it brings carries the alarm's cause.
        deadline = time.time() + 60
        causes = ""
        while time.time() < deadline and "triggered policy cpu20" not in causes:
            acts = asg.describe_scaling_activities(AutoScalingGroupName="busy")["Activities"]
            causes = " | ".join(a["Cause"] for a in acts)
            time.sleep(1)
        assert "a monitor alarm TargetTracking-busy-AlarmHigh-" in causes, causes
        assert "triggered policy cpu20 changing the desired capacity from 1 to 2" in causes, causes

        # Both in service; a target far above what a vCPU can reach scales back in to MinSize.
        in_service(asg, "busy", 2)
        asg.put_scaling_policy(
            AutoScalingGroupName="busy", PolicyName="cpu20", PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 1000.0})
        deadline = time.time() + 120
        while time.time() < deadline and desired(asg, "busy") != 1:
            time.sleep(1)
        assert desired(asg, "busy") == 1
        in_service(asg, "busy", 1)
    finally:
        try:
            if asg is not None:
                force_delete(asg, client, "busy")
        finally:
            if srv.proc.poll() is None:
                srv.stop()

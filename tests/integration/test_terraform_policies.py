"""Terraform's `aws_autoscaling_policy` (target tracking, simple, step; one disabled) and
`aws_autoscaling_schedule` on a group of zero instances: apply, the API sees what was
declared, `plan -detailed-exitcode` shows no drift (every attribute the provider reads back
round-trips, Enabled included), a changed target value is applied in place, destroy.

How Terraform and its provider get here, and the loopback-only checks: test_terraform.py.
"""

import json
import shutil
import textwrap

from test_terraform import MIRROR, MIRROR_CANDIDATES, needs_terraform, provider_tf, terraform, tf_env

pytestmark = [needs_terraform]


def main_tf(endpoint: str, suffix: str, target: float) -> str:
    return provider_tf(endpoint, "ec2", "autoscaling") + textwrap.dedent(f"""\
        resource "aws_launch_template" "t" {{
          name          = "tf-pol-{suffix}"
          image_id      = "ami-12345678901234567"
          instance_type = "t3.micro"
        }}

        resource "aws_autoscaling_group" "g" {{
          name               = "tf-pol-{suffix}"
          min_size           = 0
          max_size           = 4
          desired_capacity   = 0
          availability_zones = ["us-east-1a"]
          launch_template {{
            id      = aws_launch_template.t.id
            version = "$Latest"
          }}
        }}

        resource "aws_autoscaling_policy" "cpu" {{
          name                   = "cpu"
          autoscaling_group_name = aws_autoscaling_group.g.name
          policy_type            = "TargetTrackingScaling"
          estimated_instance_warmup = 90
          target_tracking_configuration {{
            predefined_metric_specification {{
              predefined_metric_type = "ASGAverageCPUUtilization"
            }}
            target_value = {target}
          }}
        }}

        resource "aws_autoscaling_policy" "up" {{
          name                   = "up"
          autoscaling_group_name = aws_autoscaling_group.g.name
          adjustment_type        = "ChangeInCapacity"
          scaling_adjustment     = 1
          cooldown               = 120
          enabled                = false
        }}

        resource "aws_autoscaling_policy" "steps" {{
          name                      = "steps"
          autoscaling_group_name    = aws_autoscaling_group.g.name
          policy_type               = "StepScaling"
          adjustment_type           = "PercentChangeInCapacity"
          min_adjustment_magnitude  = 1
          metric_aggregation_type   = "Maximum"
          step_adjustment {{
            scaling_adjustment          = 10
            metric_interval_lower_bound = 0
            metric_interval_upper_bound = 20
          }}
          step_adjustment {{
            scaling_adjustment          = 30
            metric_interval_lower_bound = 20
          }}
        }}

        resource "aws_autoscaling_schedule" "night" {{
          scheduled_action_name  = "night"
          autoscaling_group_name = aws_autoscaling_group.g.name
          recurrence             = "0 2 * * *"
          min_size               = 0
          max_size               = 2
          desired_capacity       = 0
        }}

        output "group" {{
          value = aws_autoscaling_group.g.name
        }}
    """)


def test_terraform_policies_and_schedule(server, alice, ec2, tmp_path):
    assert shutil.which("terraform"), "terraform is not on PATH"
    assert MIRROR, f"no hashicorp/aws provider in any of {MIRROR_CANDIDATES}"
    suffix = tmp_path.name[-8:].replace("_", "-").lower()
    (tmp_path / "main.tf").write_text(main_tf(server.endpoint, suffix, 50))
    env = tf_env(tmp_path, alice)
    asg = ec2(alice, service="autoscaling")

    terraform(tmp_path, env, "init", "-no-color")
    try:
        terraform(tmp_path, env, "apply", "-auto-approve", "-no-color")
        group = json.loads(terraform(tmp_path, env, "output", "-json").stdout)["group"]["value"]
        policies = {p["PolicyName"]: p for p in asg.describe_policies(AutoScalingGroupName=group)["ScalingPolicies"]}
        assert sorted(policies) == ["cpu", "steps", "up"]
        assert policies["cpu"]["TargetTrackingConfiguration"]["TargetValue"] == 50.0
        assert len(policies["cpu"]["Alarms"]) == 2
        assert policies["up"]["Enabled"] is False and policies["up"]["Cooldown"] == 120
        assert [s["ScalingAdjustment"] for s in policies["steps"]["StepAdjustments"]] == [10, 30]
        actions = asg.describe_scheduled_actions(AutoScalingGroupName=group)["ScheduledUpdateGroupActions"]
        assert [(a["ScheduledActionName"], a["Recurrence"], a["MaxSize"]) for a in actions] == [("night", "0 2 * * *", 2)]

        plan = terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color", ok_codes=(0, 2))
        assert plan.returncode == 0, f"terraform plan shows drift after apply:\n{plan.stdout[-8000:]}"

        # An in-place change keeps the policy's ARN.
        arn = policies["cpu"]["PolicyARN"]
        (tmp_path / "main.tf").write_text(main_tf(server.endpoint, suffix, 35))
        terraform(tmp_path, env, "apply", "-auto-approve", "-no-color")
        cpu = asg.describe_policies(AutoScalingGroupName=group, PolicyNames=["cpu"])["ScalingPolicies"][0]
        assert cpu["PolicyARN"] == arn and cpu["TargetTrackingConfiguration"]["TargetValue"] == 35.0
        plan = terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color", ok_codes=(0, 2))
        assert plan.returncode == 0, f"terraform plan shows drift after the update:\n{plan.stdout[-8000:]}"
    finally:
        terraform(tmp_path, env, "destroy", "-auto-approve", "-no-color")
    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"] == []
    assert all(p["AutoScalingGroupName"] != group for p in asg.describe_policies()["ScalingPolicies"])

"""Terraform (hashicorp/aws provider) builds a load-balanced Auto Scaling group on openami:
`aws_launch_template`, `aws_lb`, `aws_lb_target_group`, `aws_lb_listener`,
`aws_lb_listener_rule`, `aws_autoscaling_group` (ELB health checks, the target group
attached), `aws_autoscaling_policy` (target tracking) and `aws_autoscaling_lifecycle_hook`.

apply (the provider waits for the load balancer to be active and the group's instance to be
InService and Healthy) → the load balancer answers through its listener with the instance's id
and the rule's fixed response → `plan -detailed-exitcode` shows no drift → destroy leaves no
group, load balancer, target group or running instance behind.

How Terraform and its provider get here, and the loopback-only checks: test_terraform.py.
"""

import http.client
import json
import shutil
import socket
import textwrap
import time

from test_instances import guest_image, guest_raw, needs_qemu  # noqa: F401
from test_terraform import MIRROR, MIRROR_CANDIDATES, needs_terraform, provider_tf, terraform, tf_env

pytestmark = [needs_qemu, needs_terraform]


def main_tf(endpoint: str, image: str, suffix: str, port: int) -> str:
    return provider_tf(endpoint, "ec2", "autoscaling", "elbv2") + textwrap.dedent(f"""\
        data "aws_vpc" "default" {{
          default = true
        }}

        data "aws_subnets" "default" {{
          filter {{
            name   = "vpc-id"
            values = [data.aws_vpc.default.id]
          }}
        }}

        resource "aws_security_group" "lb" {{
          name   = "tf-lb-{suffix}"
          vpc_id = data.aws_vpc.default.id
          ingress {{
            from_port   = {port}
            to_port     = {port}
            protocol    = "tcp"
            cidr_blocks = ["0.0.0.0/0"]
          }}
        }}

        resource "aws_security_group" "web" {{
          name   = "tf-web-{suffix}"
          vpc_id = data.aws_vpc.default.id
          ingress {{
            from_port       = 80
            to_port         = 80
            protocol        = "tcp"
            security_groups = [aws_security_group.lb.id]
          }}
        }}

        resource "aws_launch_template" "web" {{
          name                   = "tf-web-{suffix}"
          image_id               = "{image}"
          instance_type          = "t3.micro"
          vpc_security_group_ids = [aws_security_group.web.id]
        }}

        resource "aws_lb" "web" {{
          name               = "tf-web-{suffix}"
          load_balancer_type = "application"
          subnets            = data.aws_subnets.default.ids
          security_groups    = [aws_security_group.lb.id]
        }}

        resource "aws_lb_target_group" "web" {{
          name                 = "tf-web-{suffix}"
          port                 = 80
          protocol             = "HTTP"
          vpc_id               = data.aws_vpc.default.id
          deregistration_delay = 5
          health_check {{
            path                = "/"
            matcher             = "200-299"
            interval            = 5
            timeout             = 3
            healthy_threshold   = 2
            unhealthy_threshold = 2
          }}
        }}

        resource "aws_lb_listener" "web" {{
          load_balancer_arn = aws_lb.web.arn
          port              = {port}
          protocol          = "HTTP"
          default_action {{
            type             = "forward"
            target_group_arn = aws_lb_target_group.web.arn
          }}
        }}

        resource "aws_lb_listener_rule" "fixed" {{
          listener_arn = aws_lb_listener.web.arn
          priority     = 10
          condition {{
            path_pattern {{
              values = ["/health-of-lb"]
            }}
          }}
          action {{
            type = "fixed-response"
            fixed_response {{
              content_type = "text/plain"
              message_body = "lb ok"
              status_code  = "200"
            }}
          }}
        }}

        resource "aws_autoscaling_group" "web" {{
          name                      = "tf-web-{suffix}"
          min_size                  = 1
          max_size                  = 2
          desired_capacity          = 1
          vpc_zone_identifier       = data.aws_subnets.default.ids
          target_group_arns         = [aws_lb_target_group.web.arn]
          health_check_type         = "ELB"
          health_check_grace_period = 120
          launch_template {{
            id      = aws_launch_template.web.id
            version = aws_launch_template.web.latest_version
          }}
          tag {{
            key                 = "Name"
            value               = "tf-web-{suffix}"
            propagate_at_launch = true
          }}
        }}

        resource "aws_autoscaling_policy" "cpu" {{
          name                   = "cpu50"
          autoscaling_group_name = aws_autoscaling_group.web.name
          policy_type            = "TargetTrackingScaling"
          target_tracking_configuration {{
            predefined_metric_specification {{
              predefined_metric_type = "ASGAverageCPUUtilization"
            }}
            target_value = 50
          }}
        }}

        resource "aws_autoscaling_lifecycle_hook" "launch" {{
          name                   = "hold-launch"
          autoscaling_group_name = aws_autoscaling_group.web.name
          default_result         = "CONTINUE"
          heartbeat_timeout      = 60
          lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
        }}

        output "lb_arn"  {{ value = aws_lb.web.arn }}
        output "tg_arn"  {{ value = aws_lb_target_group.web.arn }}
        output "group"   {{ value = aws_autoscaling_group.web.name }}
    """)


def get(addr, port, path):
    conn = http.client.HTTPConnection(addr, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode().strip()
    finally:
        conn.close()


def test_terraform_load_balanced_group(server, alice, ec2, guest_image, tmp_path):
    assert shutil.which("terraform"), "terraform is not on PATH"
    assert MIRROR, f"no hashicorp/aws provider in any of {MIRROR_CANDIDATES}"
    image, _ = guest_image
    suffix = tmp_path.name[-8:].replace("_", "-").lower()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "main.tf").write_text(main_tf(server.endpoint, image, suffix, port))
    env = tf_env(tmp_path, alice)
    client, elb, asg = ec2(alice), ec2(alice, service="elbv2"), ec2(alice, service="autoscaling")

    terraform(tmp_path, env, "init", "-no-color")
    try:
        terraform(tmp_path, env, "apply", "-auto-approve", "-no-color")
        outputs = {k: v["value"] for k, v in json.loads(
            terraform(tmp_path, env, "output", "-json").stdout).items()}

        group = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[outputs["group"]])["AutoScalingGroups"][0]
        assert group["HealthCheckType"] == "ELB" and group["TargetGroupARNs"] == [outputs["tg_arn"]]
        ids = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
        assert len(ids) == 1, json.dumps((group["Instances"], asg.describe_scaling_activities(
            AutoScalingGroupName=outputs["group"])["Activities"]), default=str)
        inst = client.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"][0]
        assert inst["ImageId"] == image
        assert {"Key": "Name", "Value": f"tf-web-{suffix}"} in inst["Tags"]
        assert {"Key": "aws:autoscaling:groupName", "Value": outputs["group"]} in inst["Tags"]
        lb = elb.describe_load_balancers(LoadBalancerArns=[outputs["lb_arn"]])["LoadBalancers"][0]
        assert lb["State"]["Code"] == "active"
        addr = lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]
        assert get(addr, port, "/health-of-lb") == (200, "lb ok")
        deadline = time.time() + 120
        while True:
            health = elb.describe_target_health(TargetGroupArn=outputs["tg_arn"])["TargetHealthDescriptions"]
            if [h["TargetHealth"]["State"] for h in health] == ["healthy"]:
                break
            assert time.time() < deadline, health
            time.sleep(1)
        assert get(addr, port, "/") == (200, ids[0])
        hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=outputs["group"])["LifecycleHooks"]
        assert [h["LifecycleHookName"] for h in hooks] == ["hold-launch"]

        plan = terraform(tmp_path, env, "plan", "-detailed-exitcode", "-no-color", ok_codes=(0, 2))
        assert plan.returncode == 0, f"terraform plan shows drift after apply:\n{plan.stdout[-8000:]}"
    finally:
        terraform(tmp_path, env, "destroy", "-auto-approve", "-no-color")

    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["group"]])["AutoScalingGroups"] == []
    assert [lb["LoadBalancerName"] for lb in elb.describe_load_balancers()["LoadBalancers"]
            if lb["LoadBalancerName"] == f"tf-web-{suffix}"] == []
    assert [tg for tg in elb.describe_target_groups()["TargetGroups"]
            if tg["TargetGroupName"] == f"tf-web-{suffix}"] == []
    states = [i["State"]["Name"] for r in client.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]]
    assert states == ["terminated"], states

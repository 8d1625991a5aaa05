"""Terraform (hashicorp/aws provider) builds a load balancer on openami without any VM:
`aws_lb` (application and network), `aws_lb_target_group` (HTTP and TCP, ip targets),
`aws_lb_target_group_attachment` (a Python HTTP server on 127.0.0.1), `aws_lb_listener` (HTTP
and TCP) and `aws_lb_listener_rule`.

apply (the provider waits for the load balancer to be active) → traffic reaches the target
through the listener and the rule answers its fixed response → `plan -detailed-exitcode`
shows no drift → destroy leaves nothing behind.

How Terraform and its provider get here, and the loopback-only checks: test_terraform.py.
"""

import json
import random
import textwrap

from conftest import Server
from test_elb import Backend, clients, get, random_pool, random_port, wait_for
from test_terraform import needs_terraform, provider_tf, terraform, tf_env

pytestmark = [needs_terraform]


def main_tf(endpoint: str, port: int, nlb_port: int, target_port: int, suffix: str, vpc: str,
            subnets: list) -> str:
    subnet_list = ", ".join(f'"{s}"' for s in subnets)
    return provider_tf(endpoint, "ec2", "elbv2") + textwrap.dedent(f"""\
        resource "aws_lb" "web" {{
          name               = "tf-elb-{suffix}"
          load_balancer_type = "application"
          subnets            = [{subnet_list}]
          idle_timeout       = 120
          tags = {{
            Team = "web"
          }}
        }}

        resource "aws_lb_target_group" "web" {{
          name                 = "tf-elb-{suffix}"
          port                 = 80
          protocol             = "HTTP"
          target_type          = "ip"
          vpc_id               = "{vpc}"
          deregistration_delay = 5
          health_check {{
            path                = "/health"
            matcher             = "200-299"
            interval            = 5
            timeout             = 3
            healthy_threshold   = 2
            unhealthy_threshold = 2
          }}
        }}

        resource "aws_lb_target_group_attachment" "local" {{
          target_group_arn = aws_lb_target_group.web.arn
          target_id        = "127.0.0.1"
          port             = {target_port}
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
              values = ["/api/*"]
            }}
          }}
          action {{
            type = "fixed-response"
            fixed_response {{
              content_type = "text/plain"
              message_body = "api says hi"
              status_code  = "200"
            }}
          }}
        }}

        resource "aws_lb" "net" {{
          name               = "tf-nlb-{suffix}"
          load_balancer_type = "network"
          subnets            = [{subnet_list}]
        }}

        resource "aws_lb_target_group" "tcp" {{
          name        = "tf-tcp-{suffix}"
          port        = 80
          protocol    = "TCP"
          target_type = "ip"
          vpc_id      = "{vpc}"
          health_check {{
            protocol            = "TCP"
            interval            = 10
            healthy_threshold   = 2
            unhealthy_threshold = 2
          }}
        }}

        resource "aws_lb_target_group_attachment" "tcp" {{
          target_group_arn = aws_lb_target_group.tcp.arn
          target_id        = "127.0.0.1"
          port             = {target_port}
        }}

        resource "aws_lb_listener" "tcp" {{
          load_balancer_arn = aws_lb.net.arn
          port              = {nlb_port}
          protocol          = "TCP"
          default_action {{
            type             = "forward"
            target_group_arn = aws_lb_target_group.tcp.arn
          }}
        }}

        output "lb_arn" {{ value = aws_lb.web.arn }}
        output "nlb_arn" {{ value = aws_lb.net.arn }}
        output "tcp_arn" {{ value = aws_lb_target_group.tcp.arn }}
        output "tg_arn" {{ value = aws_lb_target_group.web.arn }}
    """)


def test_terraform_load_balancer_ip_targets(tmp_path):
    pool = random_pool()
    srv = Server(tmp_path / "data", extra_args=["--lb-address-pool", pool])
    backend = Backend("tf-target")
    try:
        creds = srv.create_account("tf-elb")
        elb, ec2 = clients(srv, creds)
        # The default VPC's ids are given literally (the `data "aws_vpc"` filter `isDefault`
        # is the EC2 layer's business, not this test's).
        subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        vpc = subnets[0]["VpcId"]
        work = tmp_path / "tf"
        work.mkdir()
        port, nlb_port = random_port(), random_port()
        suffix = "%06x" % random.randrange(1 << 24)
        (work / "main.tf").write_text(main_tf(srv.endpoint, port, nlb_port, backend.port, suffix, vpc, [x["SubnetId"] for x in subnets]))
        env = tf_env(work, creds)
        terraform(work, env, "init", "-no-color")
        terraform(work, env, "apply", "-auto-approve", "-no-color")
        outputs = {k: v["value"] for k, v in json.loads(
            terraform(work, env, "output", "-json").stdout).items()}

        lb = elb.describe_load_balancers(LoadBalancerArns=[outputs["lb_arn"]])["LoadBalancers"][0]
        assert lb["State"]["Code"] == "active"
        addr = lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]
        wait_for(lambda: elb.describe_target_health(TargetGroupArn=outputs["tg_arn"])
                 ["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy",
                 what="the attached target healthy")
        status, body = get(f"http://{addr}:{port}/hello")
        assert status == 200 and json.loads(body)["name"] == "tf-target"
        assert get(f"http://{addr}:{port}/api/x") == (200, "api says hi")

        nlb = elb.describe_load_balancers(LoadBalancerArns=[outputs["nlb_arn"]])["LoadBalancers"][0]
        nlb_addr = nlb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]
        wait_for(lambda: elb.describe_target_health(TargetGroupArn=outputs["tcp_arn"])
                 ["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy",
                 what="the TCP target healthy")
        status, body = get(f"http://{nlb_addr}:{nlb_port}/via-nlb")
        assert status == 200 and json.loads(body)["path"] == "/via-nlb"

        # No drift: every attribute the provider reads matches what it wrote.
        terraform(work, env, "plan", "-detailed-exitcode", "-no-color")

        terraform(work, env, "destroy", "-auto-approve", "-no-color")
        assert elb.describe_load_balancers()["LoadBalancers"] == []
        assert elb.describe_target_groups()["TargetGroups"] == []
    finally:
        backend.stop()
        if srv.proc.poll() is None:
            srv.stop()

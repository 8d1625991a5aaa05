"""Elastic Load Balancing v2 through boto3's `elbv2` client against the real server:
control-plane shapes and AWS's error codes, a Terraform-like call sequence, and real
traffic through load balancer listeners to `ip` targets at 127.0.0.1 (small Python HTTP
servers started by the test; no VMs), across an openami restart.

Each test module server gets its own load balancer address pool and listeners use random
high ports, so parallel runs on one host do not collide."""

import http.client
import json
import random
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, error_code

FAST = {"Delay": 1, "MaxAttempts": 60}


def random_pool():
    return f"127.{random.randint(103, 250)}.{random.randint(0, 255)}.0/24"


def random_port():
    return random.randint(20000, 60000)


def clients(srv, creds):
    def make(service):
        return boto3.client(
            service, endpoint_url=srv.endpoint, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            config=Config(retries={"max_attempts": 1}))
    return make("elbv2"), make("ec2")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pool = random_pool()
    srv = Server(tmp_path_factory.mktemp("elb") / "data", extra_args=["--lb-address-pool", pool])
    creds = srv.create_account("elb-user")
    elb, ec2 = clients(srv, creds)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    yield {"srv": srv, "creds": creds, "elb": elb, "ec2": ec2, "pool": pool,
           "subnets": [s["SubnetId"] for s in subnets], "vpc": subnets[0]["VpcId"]}
    if srv.proc.poll() is None:
        srv.stop()


class Backend:
    """A tiny HTTP server on 127.0.0.1 answering JSON with its name, the path and headers."""

    def __init__(self, name):
        outer = self
        self.name = name
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/health":
                    outer.hits += 1
                body = json.dumps({"name": outer.name, "path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def lb_address(lb):
    return lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]


def make_alb(env, name):
    lb = env["elb"].create_load_balancer(Name=name, Subnets=env["subnets"][:2])["LoadBalancers"][0]
    env["elb"].get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb["LoadBalancerArn"]],
                                                          WaiterConfig=FAST)
    return lb


def test_load_balancer_shapes_attributes_and_errors(env):
    elb = env["elb"]
    with pytest.raises(ClientError) as e:
        elb.describe_load_balancers(Names=["nope"])
    assert error_code(e.value) == "LoadBalancerNotFound"
    with pytest.raises(ClientError) as e:
        elb.create_load_balancer(Name="one-subnet", Subnets=env["subnets"][:1])
    assert error_code(e.value) == "ValidationError"

    lb = elb.create_load_balancer(Name="web", Subnets=env["subnets"][:2], Scheme="internet-facing",
                                  Tags=[{"Key": "env", "Value": "test"}])["LoadBalancers"][0]
    arn = lb["LoadBalancerArn"]
    assert arn.startswith("arn:aws:elasticloadbalancing:us-east-1:")
    assert ":loadbalancer/app/web/" in arn
    lbid = arn.rsplit("/", 1)[1]
    assert len(lbid) == 16
    assert lb["DNSName"] == f"web-{lbid}.us-east-1.elb.amazonaws.com"
    assert lb["State"]["Code"] in ("provisioning", "active")
    assert lb["Type"] == "application" and lb["IpAddressType"] == "ipv4" and lb["VpcId"] == env["vpc"]
    default_sg = env["ec2"].describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [env["vpc"]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    assert lb["SecurityGroups"] == [default_sg]
    zones = lb["AvailabilityZones"]
    assert [z["SubnetId"] for z in zones] == env["subnets"][:2]
    addr = lb_address(lb)
    prefix = env["pool"].rsplit(".", 1)[0] + "."
    assert addr.startswith(prefix)
    assert all(lb_address({"AvailabilityZones": [z]}) == addr for z in zones)

    elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[arn], WaiterConfig=FAST)
    assert elb.describe_load_balancers(Names=["web"])["LoadBalancers"][0]["State"]["Code"] == "active"

    # Same name, same settings: the same load balancer; another type: a duplicate.
    again = elb.create_load_balancer(Name="web", Subnets=env["subnets"][:2])["LoadBalancers"][0]
    assert again["LoadBalancerArn"] == arn
    with pytest.raises(ClientError) as e:
        elb.create_load_balancer(Name="web", Type="network", Subnets=env["subnets"][:1])
    assert error_code(e.value) == "DuplicateLoadBalancerName"

    nlb = elb.create_load_balancer(Name="net", Type="network", Subnets=env["subnets"][:1])["LoadBalancers"][0]
    assert ":loadbalancer/net/net/" in nlb["LoadBalancerArn"] and nlb["SecurityGroups"] == []
    assert lb_address(nlb) != addr

    # Paging.
    first = elb.describe_load_balancers(PageSize=1)
    assert len(first["LoadBalancers"]) == 1 and first["NextMarker"]
    rest = elb.describe_load_balancers(PageSize=1, Marker=first["NextMarker"])
    assert rest["LoadBalancers"][0]["LoadBalancerArn"] != first["LoadBalancers"][0]["LoadBalancerArn"]

    # Attributes: the 14 keys Terraform sends round-trip; unknown keys are named.
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
    assert attrs["idle_timeout.timeout_seconds"] == "60"
    assert attrs["routing.http.desync_mitigation_mode"] == "defensive"
    assert attrs["routing.http2.enabled"] == "true"
    terraform = {
        "access_logs.s3.enabled": "false", "connection_logs.s3.enabled": "false",
        "client_keep_alive.seconds": "3600", "idle_timeout.timeout_seconds": "120",
        "routing.http.xff_header_processing.mode": "append", "deletion_protection.enabled": "true",
        "routing.http.x_amzn_tls_version_and_cipher_suite.enabled": "false",
        "routing.http.xff_client_port.enabled": "false", "routing.http.preserve_host_header.enabled": "false",
        "zonal_shift.config.enabled": "false", "routing.http.drop_invalid_header_fields.enabled": "false",
        "waf.fail_open.enabled": "false", "routing.http.desync_mitigation_mode": "defensive",
        "routing.http2.enabled": "true",
    }
    elb.modify_load_balancer_attributes(LoadBalancerArn=arn,
                                        Attributes=[{"Key": k, "Value": v} for k, v in terraform.items()])
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
    for k, v in terraform.items():
        assert attrs[k] == v, k
    with pytest.raises(ClientError) as e:
        elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[{"Key": "bogus.key", "Value": "1"}])
    assert error_code(e.value) == "ValidationError"
    assert "attribute key 'bogus.key' is not recognized" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        elb.modify_load_balancer_attributes(
            LoadBalancerArn=arn, Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "0"}])
    assert error_code(e.value) == "ValidationError"
    nlb_attrs = {a["Key"] for a in elb.describe_load_balancer_attributes(
        LoadBalancerArn=nlb["LoadBalancerArn"])["Attributes"]}
    assert "dns_record.client_routing_policy" in nlb_attrs and "routing.http2.enabled" not in nlb_attrs

    # Deletion protection.
    with pytest.raises(ClientError) as e:
        elb.delete_load_balancer(LoadBalancerArn=arn)
    assert error_code(e.value) == "OperationNotPermitted"
    elb.modify_load_balancer_attributes(LoadBalancerArn=arn,
                                        Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}])
    tags = elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]
    assert tags == [{"Key": "env", "Value": "test"}]
    cap = elb.describe_capacity_reservation(LoadBalancerArn=arn)
    assert len(cap["CapacityReservationState"]) == 2
    elb.delete_load_balancer(LoadBalancerArn=arn)
    elb.delete_load_balancer(LoadBalancerArn=nlb["LoadBalancerArn"])
    elb.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[arn], WaiterConfig=FAST)
    with pytest.raises(ClientError) as e:
        elb.describe_load_balancers(LoadBalancerArns=[arn])
    assert error_code(e.value) == "LoadBalancerNotFound"


def test_terraform_like_sequence_target_groups_listeners_rules(env):
    elb = env["elb"]
    with pytest.raises(ClientError) as e:
        elb.describe_target_groups(Names=["tf-tg"])
    assert error_code(e.value) == "TargetGroupNotFound"
    # Terraform 5.100 sends ProtocolVersion= empty.
    tg = elb.create_target_group(Name="tf-tg", Protocol="HTTP", ProtocolVersion="", Port=8080,
                                 VpcId=env["vpc"], TargetType="instance", HealthCheckPath="/health",
                                 Matcher={"HttpCode": "200-299"})["TargetGroups"][0]
    tg_arn = tg["TargetGroupArn"]
    assert ":targetgroup/tf-tg/" in tg_arn
    assert tg["ProtocolVersion"] == "HTTP1" and tg["HealthCheckPort"] == "traffic-port"
    assert (tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"]) == (30, 5)
    assert (tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (5, 2)
    assert tg["Matcher"] == {"HttpCode": "200-299"} and tg["HealthCheckEnabled"] is True
    assert tg["LoadBalancerArns"] == []
    with pytest.raises(ClientError) as e:
        elb.create_target_group(Name="bad", Protocol="HTTP", Port=80, VpcId=env["vpc"],
                                HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=5)
    assert error_code(e.value) == "ValidationError"
    tcp = elb.create_target_group(Name="tf-tcp", Protocol="TCP", Port=9000, VpcId=env["vpc"])["TargetGroups"][0]
    assert tcp["HealthCheckProtocol"] == "TCP" and "Matcher" not in tcp

    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]}
    assert attrs["deregistration_delay.timeout_seconds"] == "300"
    assert attrs["stickiness.type"] == "lb_cookie" and attrs["load_balancing.algorithm.type"] == "round_robin"
    elb.modify_target_group_attributes(TargetGroupArn=tg_arn, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "30"}])
    tcp_attrs = {a["Key"] for a in elb.describe_target_group_attributes(
        TargetGroupArn=tcp["TargetGroupArn"])["Attributes"]}
    assert {"proxy_protocol_v2.enabled", "preserve_client_ip.enabled"} <= tcp_attrs
    modified = elb.modify_target_group(TargetGroupArn=tg_arn, HealthCheckIntervalSeconds=10)["TargetGroups"][0]
    assert modified["HealthCheckIntervalSeconds"] == 10

    lb = make_alb(env, "tf-lb")
    lb_arn = lb["LoadBalancerArn"]
    port = random_port()
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
    assert error_code(e.value) in ("UnsupportedProtocol", "CertificateNotFound")
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tcp["TargetGroupArn"]}])
    assert error_code(e.value) == "IncompatibleProtocols"
    listener = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn, "Order": 1}]
                                   )["Listeners"][0]
    l_arn = listener["ListenerArn"]
    assert ":listener/app/tf-lb/" in l_arn
    action = listener["DefaultActions"][0]
    assert action["Order"] == 1 and action["TargetGroupArn"] == tg_arn
    assert action["ForwardConfig"]["TargetGroups"] == [{"TargetGroupArn": tg_arn, "Weight": 1}]
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port,
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
    assert error_code(e.value) == "DuplicateListener"
    assert elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"][0]["ListenerArn"] == l_arn
    lattrs = {a["Key"] for a in elb.describe_listener_attributes(ListenerArn=l_arn)["Attributes"]}
    assert "routing.http.response.server.enabled" in lattrs

    described = elb.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
    assert described["LoadBalancerArns"] == [lb_arn]
    by_lb = elb.describe_target_groups(LoadBalancerArn=lb_arn)["TargetGroups"]
    assert [t["TargetGroupArn"] for t in by_lb] == [tg_arn]
    with pytest.raises(ClientError) as e:
        elb.delete_target_group(TargetGroupArn=tg_arn)
    assert error_code(e.value) == "ResourceInUse"
    assert "is currently in use by a listener or a rule" in e.value.response["Error"]["Message"]

    # Rules: the default rule, both condition forms, priorities.
    rules = elb.describe_rules(ListenerArn=l_arn)["Rules"]
    assert len(rules) == 1 and rules[0]["IsDefault"] is True and rules[0]["Priority"] == "default"
    r1 = elb.create_rule(ListenerArn=l_arn, Priority=10,
                         Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                         Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                             "StatusCode": "418", "ContentType": "text/plain", "MessageBody": "teapot"}}]
                         )["Rules"][0]
    assert r1["Priority"] == "10" and r1["IsDefault"] is False
    assert r1["Conditions"][0]["PathPatternConfig"]["Values"] == ["/api/*"]
    r2 = elb.create_rule(ListenerArn=l_arn, Priority=20, Conditions=[
        {"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}},
        {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["prod"]}},
        {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "1"}]}},
        {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}},
        {"Field": "source-ip", "SourceIpConfig": {"Values": ["127.0.0.0/8"]}},
    ], Actions=[{"Type": "redirect", "RedirectConfig": {"Path": "/moved", "StatusCode": "HTTP_302"}}])["Rules"][0]
    fields = [c["Field"] for c in r2["Conditions"]]
    assert fields == ["host-header", "http-header", "query-string", "http-request-method", "source-ip"]
    assert r2["Conditions"][2]["QueryStringConfig"]["Values"] == [{"Key": "v", "Value": "1"}]
    with pytest.raises(ClientError) as e:
        elb.create_rule(ListenerArn=l_arn, Priority=10, Conditions=[{"Field": "path-pattern", "Values": ["/x"]}],
                        Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
    assert error_code(e.value) == "PriorityInUse"
    elb.set_rule_priorities(RulePriorities=[{"RuleArn": r1["RuleArn"], "Priority": 30}])
    elb.modify_rule(RuleArn=r2["RuleArn"], Conditions=[{"Field": "path-pattern", "Values": ["/old/*"]}])
    listed = elb.describe_rules(ListenerArn=l_arn)["Rules"]
    assert [r["Priority"] for r in listed] == ["20", "30", "default"]
    assert listed[0]["Conditions"][0]["Values"] == ["/old/*"]
    default_arn = listed[-1]["RuleArn"]
    with pytest.raises(ClientError) as e:
        elb.delete_rule(RuleArn=default_arn)
    assert error_code(e.value) == "OperationNotPermitted"
    assert elb.describe_rules(RuleArns=[default_arn])["Rules"][0]["IsDefault"] is True

    # Tags on every resource type.
    for arn in (lb_arn, tg_arn, l_arn, r1["RuleArn"]):
        elb.add_tags(ResourceArns=[arn], Tags=[{"Key": "team", "Value": "web"}])
    descs = elb.describe_tags(ResourceArns=[lb_arn, tg_arn, l_arn, r1["RuleArn"]])["TagDescriptions"]
    assert all(d["Tags"] == [{"Key": "team", "Value": "web"}] for d in descs)
    elb.remove_tags(ResourceArns=[tg_arn], TagKeys=["team"])
    assert elb.describe_tags(ResourceArns=[tg_arn])["TagDescriptions"][0]["Tags"] == []
    with pytest.raises(ClientError) as e:
        elb.describe_tags(ResourceArns=[tg_arn.replace(tg_arn.rsplit("/", 1)[1], "0" * 16)])
    assert error_code(e.value) == "TargetGroupNotFound"

    # The static describes, and a clear error for what openami lacks.
    assert elb.describe_ssl_policies()["SslPolicies"]
    assert any(l["Name"] == "application-load-balancers" for l in elb.describe_account_limits()["Limits"])
    with pytest.raises(ClientError) as e:
        elb.describe_trust_stores()
    assert error_code(e.value) == "UnsupportedOperation"

    # Teardown in Terraform's order.
    elb.delete_rule(RuleArn=r1["RuleArn"])
    elb.delete_listener(ListenerArn=l_arn)
    with pytest.raises(ClientError) as e:
        elb.describe_listeners(ListenerArns=[l_arn])
    assert error_code(e.value) == "ListenerNotFound"
    elb.delete_target_group(TargetGroupArn=tg_arn)
    elb.delete_target_group(TargetGroupArn=tcp["TargetGroupArn"])
    elb.delete_load_balancer(LoadBalancerArn=lb_arn)


def test_register_targets_checks_and_unregistered_health(env):
    elb = env["elb"]
    tg = elb.create_target_group(Name="ip-tg", Protocol="HTTP", Port=80, VpcId=env["vpc"],
                                 TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    inst = elb.create_target_group(Name="inst-tg", Protocol="HTTP", Port=80,
                                   VpcId=env["vpc"])["TargetGroups"][0]["TargetGroupArn"]
    with pytest.raises(ClientError) as e:
        elb.register_targets(TargetGroupArn=inst, Targets=[{"Id": "i-0123456789abcdef0"}])
    assert error_code(e.value) == "InvalidTarget"
    with pytest.raises(ClientError) as e:
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "192.0.2.10"}])
    assert error_code(e.value) == "InvalidTarget"
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": 8081}])
    health = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    assert len(health) == 1
    assert health[0]["Target"] == {"Id": "127.0.0.1", "Port": 8081}
    assert health[0]["HealthCheckPort"] == "8081"
    # No listener uses the group: not in use.
    assert health[0]["TargetHealth"]["State"] == "unused"
    assert health[0]["TargetHealth"]["Reason"] == "Target.NotInUse"
    asked = elb.describe_target_health(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.2", "Port": 80}])
    assert asked["TargetHealthDescriptions"][0]["TargetHealth"] == {
        "State": "unused", "Reason": "Target.NotRegistered",
        "Description": "Target is not registered to the target group"}
    assert asked["TargetHealthDescriptions"][0]["HealthCheckPort"] == "80"
    elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": 8081}])
    elb.get_waiter("target_deregistered").wait(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": 8081}],
                                               WaiterConfig=FAST)
    assert elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"] == []
    elb.delete_target_group(TargetGroupArn=tg)
    elb.delete_target_group(TargetGroupArn=inst)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def states(elb, tg):
    return {(d["Target"]["Id"], d["Target"]["Port"]): d["TargetHealth"]["State"]
            for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]}


def serve_lb(env, name, backends, port):
    """An ALB on `port` forwarding to ip targets at the backends, with a /fixed/* rule."""
    elb = env["elb"]
    lb = make_alb(env, name)
    tg = elb.create_target_group(Name=name + "-tg", Protocol="HTTP", Port=80, VpcId=env["vpc"],
                                 TargetType="ip", HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                                 HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2,
                                 UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": b.port} for b in backends])
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]
    elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1,
                    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/fixed/*"]}}],
                    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                        "StatusCode": "418", "ContentType": "text/plain", "MessageBody": "short and stout"}}])
    return lb, tg


def test_real_traffic_round_robin_health_and_draining(env):
    elb = env["elb"]
    a, b = Backend("a"), Backend("b")
    port = random_port()
    try:
        lb, tg = serve_lb(env, "traffic", [a, b], port)
        elb.get_waiter("target_in_service").wait(
            TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": x.port} for x in (a, b)], WaiterConfig=FAST)
        base = f"http://{lb_address(lb)}:{port}"
        seen = []
        for i in range(6):
            status, body = get(f"{base}/page/{i}")
            assert status == 200
            reply = json.loads(body)
            seen.append(reply["name"])
            assert reply["path"] == f"/page/{i}"
            h = reply["headers"]
            assert h["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1"
            assert h["x-forwarded-proto"] == "http"
            assert h["x-forwarded-port"] == str(port)
        assert seen.count("a") == 3 and seen.count("b") == 3, seen

        status, body = get(f"{base}/fixed/anything")
        assert (status, body) == (418, "short and stout")

        # A target whose server stops fails its checks and leaves the rotation.
        b.stop()
        wait_for(lambda: states(elb, tg).get(("127.0.0.1", b.port)) == "unhealthy", what="b unhealthy")
        assert states(elb, tg)[("127.0.0.1", a.port)] == "healthy"
        for _ in range(4):
            status, body = get(f"{base}/after")
            assert status == 200 and json.loads(body)["name"] == "a"

        # Deregistration drains, then the target is gone.
        elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": b.port}])
        first = elb.describe_target_health(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": b.port}])
        # Draining ends at once when nothing is in flight (as AWS documents).
        assert first["TargetHealthDescriptions"][0]["TargetHealth"]["State"] in ("draining", "unused")
        elb.get_waiter("target_deregistered").wait(
            TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": b.port}], WaiterConfig=FAST)
        assert list(states(elb, tg)) == [("127.0.0.1", a.port)]
    finally:
        a.stop()
        try:
            b.stop()
        except Exception:
            pass


def test_restart_keeps_load_balancer_serving(tmp_path):
    pool = random_pool()
    srv = Server(tmp_path / "data", extra_args=["--lb-address-pool", pool])
    backend = Backend("only")
    try:
        creds = srv.create_account("elb-restart")
        elb, ec2 = clients(srv, creds)
        subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        subnets.sort(key=lambda s: s["AvailabilityZone"])
        env = {"elb": elb, "subnets": [s["SubnetId"] for s in subnets], "vpc": subnets[0]["VpcId"]}
        port = random_port()
        lb, tg = serve_lb(env, "durable", [backend], port)
        elb.get_waiter("target_in_service").wait(TargetGroupArn=tg, WaiterConfig=FAST)
        url = f"http://{lb_address(lb)}:{port}/before"
        assert json.loads(get(url)[1])["name"] == "only"

        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.log.close()
        srv = Server(srv.data_dir, extra_args=["--lb-address-pool", pool])
        elb, _ = clients(srv, creds)
        again = elb.describe_load_balancers(Names=["durable"])["LoadBalancers"][0]
        assert again["LoadBalancerArn"] == lb["LoadBalancerArn"] and lb_address(again) == lb_address(lb)
        assert again["State"]["Code"] == "active"
        assert elb.describe_rules(ListenerArn=elb.describe_listeners(
            LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]["ListenerArn"])["Rules"][0]["Priority"] == "1"
        elb.get_waiter("target_in_service").wait(TargetGroupArn=tg, WaiterConfig=FAST)
        status, body = get(f"http://{lb_address(lb)}:{port}/after")
        assert status == 200 and json.loads(body)["path"] == "/after"
        assert get(f"http://{lb_address(lb)}:{port}/fixed/x")[0] == 418
    finally:
        backend.stop()
        if srv.proc.poll() is None:
            srv.stop()


def test_network_load_balancer_splices_tcp(env):
    elb = env["elb"]
    backend = Backend("tcp-target")
    port = random_port()
    try:
        nlb = elb.create_load_balancer(Name="splice", Type="network",
                                       Subnets=env["subnets"][:1])["LoadBalancers"][0]
        tg = elb.create_target_group(Name="splice-tg", Protocol="TCP", Port=80, VpcId=env["vpc"],
                                     TargetType="ip", HealthCheckIntervalSeconds=5,
                                     HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": backend.port}])
        with pytest.raises(ClientError) as e:
            elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
        assert error_code(e.value) == "IncompatibleProtocols"
        listener = elb.create_listener(LoadBalancerArn=nlb["LoadBalancerArn"], Protocol="TCP", Port=port,
                                       DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]
        lattrs = {a["Key"]: a["Value"] for a in elb.describe_listener_attributes(
            ListenerArn=listener["ListenerArn"])["Attributes"]}
        assert lattrs == {"tcp.idle_timeout.seconds": "350"}
        with pytest.raises(ClientError) as e:
            elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=1,
                            Conditions=[{"Field": "path-pattern", "Values": ["/x"]}],
                            Actions=[{"Type": "forward", "TargetGroupArn": tg}])
        assert error_code(e.value) == "InvalidConfigurationRequest"
        elb.get_waiter("target_in_service").wait(TargetGroupArn=tg, WaiterConfig=FAST)
        status, body = get(f"http://{lb_address(nlb)}:{port}/through")
        reply = json.loads(body)
        # A layer-4 splice: the request arrives as sent, without X-Forwarded-* headers.
        assert status == 200 and reply["name"] == "tcp-target" and reply["path"] == "/through"
        assert "x-forwarded-for" not in reply["headers"]
    finally:
        backend.stop()


def test_redirect_weights_and_listener_bind_failure(env):
    elb = env["elb"]
    a, b = Backend("w-a"), Backend("w-b")
    port = random_port()
    try:
        lb = make_alb(env, "weights")
        groups = []
        for x in (a, b):
            arn = elb.create_target_group(Name=f"weights-{x.name}", Protocol="HTTP", Port=80, VpcId=env["vpc"],
                                          TargetType="ip", HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                                          HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
            elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "127.0.0.1", "Port": x.port}])
            groups.append(arn)
        # All traffic to the first group by weight (the second has weight 0).
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": groups[0], "Weight": 10}, {"TargetGroupArn": groups[1], "Weight": 0}]}}],
        )["Listeners"][0]
        fc = listener["DefaultActions"][0]["ForwardConfig"]
        assert [(g["TargetGroupArn"], g["Weight"]) for g in fc["TargetGroups"]] == [(groups[0], 10), (groups[1], 0)]
        assert {t["TargetGroupArn"] for t in elb.describe_target_groups(
            LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]} == set(groups)
        elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=5,
                        Conditions=[{"Field": "path-pattern", "Values": ["/old/*"]}],
                        Actions=[{"Type": "redirect", "RedirectConfig": {
                            "Path": "/new", "Query": "from=old", "StatusCode": "HTTP_301"}}])
        elb.get_waiter("target_in_service").wait(TargetGroupArn=groups[0], WaiterConfig=FAST)
        addr = lb_address(lb)
        names = [json.loads(get(f"http://{addr}:{port}/w/{i}")[1])["name"] for i in range(4)]
        assert names == ["w-a"] * 4
        conn = http.client.HTTPConnection(addr, port, timeout=5)
        conn.request("GET", "/old/page")
        r = conn.getresponse()
        r.read()
        assert r.status == 301
        assert r.getheader("Location") == f"http://{addr}:{port}/new?from=old"

        # A port someone else holds: the listener is refused with the reason, not kept.
        taken = random_port()
        with socket.socket() as s:
            s.bind((addr, taken))
            s.listen()
            with pytest.raises(ClientError) as e:
                elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=taken,
                                    DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[0]}])
            assert error_code(e.value) == "InvalidConfigurationRequest"
            assert f"{addr}:{taken}" in e.value.response["Error"]["Message"]
        assert [l["Port"] for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]] == [port]
        assert elb.describe_load_balancers(Names=["weights"])["LoadBalancers"][0]["State"]["Code"] == "active"
    finally:
        a.stop()
        b.stop()


def test_other_accounts_see_nothing(env):
    elb = env["elb"]
    lb = make_alb(env, "private")
    tg = elb.create_target_group(Name="private-tg", Protocol="HTTP", Port=80, VpcId=env["vpc"],
                                 TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    other_creds = env["srv"].create_account("elb-other")
    other, other_ec2 = clients(env["srv"], other_creds)
    assert other.describe_load_balancers()["LoadBalancers"] == []
    for call, code in [
        (lambda: other.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]]), "LoadBalancerNotFound"),
        (lambda: other.delete_target_group(TargetGroupArn=tg), "TargetGroupNotFound"),
        (lambda: other.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1"}]), "TargetGroupNotFound"),
        (lambda: other.describe_tags(ResourceArns=[lb["LoadBalancerArn"]]), "LoadBalancerNotFound"),
        (lambda: other.add_tags(ResourceArns=[tg], Tags=[{"Key": "k", "Value": "v"}]), "TargetGroupNotFound"),
        # Another account's subnets are not theirs to use.
        (lambda: other.create_load_balancer(Name="stolen", Subnets=env["subnets"][:2]), "SubnetNotFound"),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == code
    # Their own load balancer may not forward to this account's group either.
    subnets = sorted(other_ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])
    theirs = other.create_load_balancer(Name="theirs", Subnets=[s["SubnetId"] for s in subnets[:2]])
    with pytest.raises(ClientError) as e:
        other.create_listener(LoadBalancerArn=theirs["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP",
                              Port=random_port(), DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    assert error_code(e.value) == "TargetGroupNotFound"
    elb.delete_target_group(TargetGroupArn=tg)
    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])

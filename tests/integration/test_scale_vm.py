"""A fleet of real VMs behind a load balancer, driven by boto3 only (the issue's must-show):

- an Auto Scaling group of 3 from a launch template whose guest serves its instance id on
  port 80, behind an application load balancer whose security group is the only source the
  instances' group admits (a rule naming the load balancer's group);
- requests through the listener reach all 3, the guest sees X-Forwarded-For/Proto/Port and the
  Host it was asked for, a path rule answers a fixed response;
- killing one VM's QEMU makes the group replace it and the load balancer stop sending it
  traffic;
- an instance refresh to a new AMI under continuous requests: zero failed requests, every
  instance ends on the new image;
- target tracking on ALBRequestCountPerTarget: load on the listener scales the group out,
  removing it scales in.

One private openami runs the module with short metric periods (the evaluation windows are
configurable; AWS's are one minute). Listeners bind port 80 as root, a high port otherwise.
"""

import http.client
import os
import subprocess
import threading
import time
import uuid

import pytest

from conftest import Server, free_port
from test_instances import guest_raw, needs_qemu, upload  # noqa: F401

pytestmark = needs_qemu

LISTEN_PORT = 80 if os.geteuid() == 0 else free_port()

# The guest serves its instance id at / (tests/guest/init); the user data adds a CGI that
# echoes the forwarding headers and keeps the guest up (user data that ends powers it off).
USER_DATA = """#!/bin/sh
mkdir -p /tmp/www/cgi-bin
cat >/tmp/www/cgi-bin/h <<'EOS'
#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "xff=$HTTP_X_FORWARDED_FOR proto=$HTTP_X_FORWARDED_PROTO port=$HTTP_X_FORWARDED_PORT host=$HTTP_HOST"
EOS
chmod +x /tmp/www/cgi-bin/h
while :; do sleep 3600; done
"""


def wait_for(what, check, timeout=300, every=1.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def get(addr, path="/", host=None, timeout=10):
    conn = http.client.HTTPConnection(addr, LISTEN_PORT, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    finally:
        conn.close()


class Load:
    """Requests in a loop on a few threads; counts answers and failures."""

    def __init__(self, addr, threads=2, pause=0.0):
        self.addr, self.pause = addr, pause
        self.stop = threading.Event()
        self.ok, self.failed, self.bodies = 0, [], set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop.is_set():
            try:
                status, body = get(self.addr, timeout=15)
                with self.lock:
                    if status == 200:
                        self.ok += 1
                        self.bodies.add(body)
                    else:
                        self.failed.append((status, body[:80]))
            except OSError as e:
                with self.lock:
                    self.failed.append(("error", str(e)))
            if self.pause:
                time.sleep(self.pause)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, guest_raw):  # noqa: F811
    base = tmp_path_factory.mktemp("scale")
    env_keys = {"OPENAMI_ASG_METRIC_PERIOD_SECONDS": "5", "OPENAMI_ASG_SCALE_OUT_PERIODS": "2",
                "OPENAMI_ASG_SCALE_IN_PERIODS": "3"}
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    try:
        # Pools of its own: the session's server may hold addresses of the default pools.
        server = Server(base / "data", extra_args=["--public-ip-pool", "127.110.0.0/16",
                                                   "--lb-address-pool", "127.112.0.0/16"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    creds = server.create_account("fleet-" + uuid.uuid4().hex[:6])

    import boto3
    from botocore.config import Config

    def client(service):
        return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 1}))

    ec2, elb, asg = client("ec2"), client("elbv2"), client("autoscaling")

    def image():
        snap = upload(server, creds, guest_raw)
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap],
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        return ec2.register_image(
            Name="fleet-" + uuid.uuid4().hex[:8], Architecture="x86_64", RootDeviceName="/dev/xvda",
            VirtualizationType="hvm", BootMode="legacy-bios",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                  "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
        )["ImageId"]

    yield {"server": server, "ec2": ec2, "elb": elb, "asg": asg, "image": image}
    # Machines outlive a stopping openami (they are adopted at the next start): end them.
    ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
           if i["State"]["Name"] != "terminated"]
    for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
        try:
            asg.delete_auto_scaling_group(AutoScalingGroupName=g["AutoScalingGroupName"], ForceDelete=True)
        except Exception:  # noqa: BLE001 - best effort; the instances are ended below
            pass
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        try:
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        except Exception:  # noqa: BLE001
            pass
    server.stop()
    for iid in ids:
        subprocess.run(["pkill", "-9", "-f", f"qemu-system.*{iid}"], check=False)


@pytest.fixture(scope="module")
def fleet(cloud):
    ec2, elb, asg = cloud["ec2"], cloud["elb"], cloud["asg"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])[:3]
    lb_sg = ec2.create_security_group(GroupName="lb-" + uuid.uuid4().hex[:6],
                                      Description="load balancer", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=lb_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": LISTEN_PORT, "ToPort": LISTEN_PORT,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    web_sg = ec2.create_security_group(GroupName="web-" + uuid.uuid4().hex[:6],
                                       Description="web from the load balancer", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "UserIdGroupPairs": [{"GroupId": lb_sg}]}])
    import base64
    lt = ec2.create_launch_template(LaunchTemplateName="web-" + uuid.uuid4().hex[:6], LaunchTemplateData={
        "ImageId": cloud["image"](), "InstanceType": "t3.micro", "SecurityGroupIds": [web_sg],
        "UserData": base64.b64encode(USER_DATA.encode()).decode()})["LaunchTemplate"]
    tg = elb.create_target_group(
        Name="web-" + uuid.uuid4().hex[:6], Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance",
        HealthCheckPath="/", HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=3,
        HealthyThresholdCount=2, UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "5"}])
    lb = elb.create_load_balancer(Name="web-" + uuid.uuid4().hex[:6], Type="application",
                                  Subnets=[s["SubnetId"] for s in subnets],
                                  SecurityGroups=[lb_sg])["LoadBalancers"][0]
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP",
                                   Port=LISTEN_PORT, DefaultActions=[
                                       {"Type": "forward", "TargetGroupArn": tg}])["Listeners"][0]
    elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
                    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/fixed/*"]}}],
                    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                        "StatusCode": "200", "ContentType": "text/plain", "MessageBody": "fixed"}}])
    name = "fleet-" + uuid.uuid4().hex[:6]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=3, MaxSize=4, DesiredCapacity=3,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Latest"},
        VPCZoneIdentifier=",".join(s["SubnetId"] for s in subnets), TargetGroupARNs=[tg],
        HealthCheckType="ELB", HealthCheckGracePeriod=120, DefaultInstanceWarmup=5)
    elb.get_waiter("load_balancer_available").wait(
        LoadBalancerArns=[lb["LoadBalancerArn"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    lb = elb.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]])["LoadBalancers"][0]
    addrs = {a["IpAddress"] for z in lb["AvailabilityZones"] for a in z.get("LoadBalancerAddresses", [])}
    assert len(addrs) == 1, lb
    addr = addrs.pop()
    assert addr.startswith("127.")
    return {"name": name, "tg": tg, "lb": lb, "addr": addr, "lt": lt, "subnets": subnets,
            "web_sg": web_sg}


def group(asg, name):
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def in_service(asg, elb, fleet, count):
    """The group's InService instance ids once `count` are InService and healthy in the target group."""
    def check():
        g = group(asg, fleet["name"])
        ids = sorted(i["InstanceId"] for i in g["Instances"]
                     if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy")
        if len(ids) != count:
            return None
        health = elb.describe_target_health(TargetGroupArn=fleet["tg"])["TargetHealthDescriptions"]
        healthy = sorted(h["Target"]["Id"] for h in health if h["TargetHealth"]["State"] == "healthy")
        return ids if healthy == ids else None
    return wait_for(f"{count} InService and healthy", check, timeout=420, every=2)


def reached(addr, n=60):
    seen = set()
    for _ in range(n):
        status, body = get(addr)
        assert status == 200, (status, body)
        seen.add(body)
    return seen


def test_requests_reach_every_instance_with_forwarding_headers(cloud, fleet):
    asg, elb = cloud["asg"], cloud["elb"]
    ids = in_service(asg, elb, fleet, 3)
    g = group(asg, fleet["name"])
    assert len({i["AvailabilityZone"] for i in g["Instances"]}) == 3, "spread over the three zones"
    assert reached(fleet["addr"]) == set(ids)
    status, body = get(fleet["addr"], "/cgi-bin/h", host="shop.example.com")
    assert status == 200, body
    assert "xff=127.0.0.1" in body and "proto=http" in body, body
    assert f"port={LISTEN_PORT}" in body and "host=shop.example.com" in body, body
    assert get(fleet["addr"], "/fixed/x") == (200, "fixed")
    # Path rules are case-sensitive: /FIXED/x goes to the instances (404 from their httpd).
    assert get(fleet["addr"], "/FIXED/x")[0] == 404
    acts = asg.describe_scaling_activities(AutoScalingGroupName=fleet["name"])["Activities"]
    launched = [a for a in acts if a["Description"].startswith("Launching a new EC2 instance")]
    assert len(launched) >= 3 and all(a["StatusCode"] == "Successful" for a in launched), acts


def test_a_killed_vm_is_replaced_and_gets_no_traffic(cloud, fleet):
    asg, elb, ec2 = cloud["asg"], cloud["elb"], cloud["ec2"]
    before = in_service(asg, elb, fleet, 3)
    victim = before[0]
    subprocess.run(["pkill", "-9", "-f", f"qemu-system.*{victim}"], check=True)
    after = wait_for("a replacement", lambda: (
        ids if victim not in (ids := in_service(asg, elb, fleet, 3)) else None), timeout=420)
    assert victim not in after and len(set(after) & set(before)) == 2
    state = ec2.describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
    seen = reached(fleet["addr"])
    assert victim not in seen and seen == set(after)


def test_instance_refresh_to_a_new_ami_drops_no_request(cloud, fleet):
    asg, elb, ec2 = cloud["asg"], cloud["elb"], cloud["ec2"]
    in_service(asg, elb, fleet, 3)
    new_image = cloud["image"]()
    v2 = ec2.create_launch_template_version(
        LaunchTemplateId=fleet["lt"]["LaunchTemplateId"], SourceVersion="1",
        LaunchTemplateData={"ImageId": new_image})["LaunchTemplateVersion"]["VersionNumber"]
    with Load(fleet["addr"], threads=2, pause=0.05) as load:
        refresh = asg.start_instance_refresh(
            AutoScalingGroupName=fleet["name"],
            DesiredConfiguration={"LaunchTemplate": {
                "LaunchTemplateId": fleet["lt"]["LaunchTemplateId"], "Version": str(v2)}},
            Preferences={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 134,
                         "InstanceWarmup": 5})["InstanceRefreshId"]

        def done():
            r = asg.describe_instance_refreshes(AutoScalingGroupName=fleet["name"],
                                                InstanceRefreshIds=[refresh])["InstanceRefreshes"][0]
            return r if r["Status"] in ("Successful", "Failed", "Cancelled") else None
        result = wait_for("the refresh", done, timeout=900, every=3)
        time.sleep(3)
    assert result["Status"] == "Successful", result
    assert load.ok > 50 and load.failed == [], (load.ok, load.failed[:10])
    ids = in_service(asg, elb, fleet, 3)
    images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]}
    assert images == {new_image}
    assert reached(fleet["addr"]) == set(ids)


def test_target_tracking_scales_out_under_load_and_back_in(cloud, fleet):
    asg, elb = cloud["asg"], cloud["elb"]
    in_service(asg, elb, fleet, 3)
    lb = fleet["lb"]["LoadBalancerArn"].split(":loadbalancer/")[1]
    tg = fleet["tg"].split(":")[-1]
    asg.put_scaling_policy(
        AutoScalingGroupName=fleet["name"], PolicyName="requests", PolicyType="TargetTrackingScaling",
        TargetTrackingConfiguration={
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget",
                                              "ResourceLabel": f"{lb}/{tg}"},
            "TargetValue": 20.0})
    with Load(fleet["addr"], threads=2):
        wait_for("scale-out", lambda: group(asg, fleet["name"])["DesiredCapacity"] == 4, timeout=300)
        in_service(asg, elb, fleet, 4)
    wait_for("scale-in", lambda: group(asg, fleet["name"])["DesiredCapacity"] == 3, timeout=400)
    in_service(asg, elb, fleet, 3)
    causes = [a["Cause"] for a in asg.describe_scaling_activities(
        AutoScalingGroupName=fleet["name"])["Activities"]]
    assert any("requests" in c for c in causes), causes

#!/usr/bin/env python3
"""Benchmark: the load balancer and Auto Scaling, in one run.

1. Load balancer throughput and added latency, vs requests sent straight to the target:
   wrk (keep-alive, 2 threads, 16 connections, 10 s) against
   a. one instance's public address (the test guest's busybox httpd under TCG) and the same
      instance through an application load balancer listener;
   b. a host HTTP server (busybox httpd on 127.0.0.1, an `ip` target) and the same server
      through a listener: the proxy's own cost, without a slow emulated guest in the way.
   Prints requests/s and p50/p99 latency of each, the ratio proxied/direct and the p50 added.
2. Time from SetDesiredCapacity +3 (0 → 3) to all three InService and healthy in the target group.
3. Wall time of an instance refresh of those 3 instances to a new AMI (MinHealthyPercentage 100).

Usage: python3 bench/fleet.py [--openami target/release/openami] [--duration 10]
Needs: root (listener port 80 is not needed: listeners use a high port), qemu-system-x86_64,
wrk (apt install wrk), busybox, the test guest (scripts/build-test-guest).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from openami_server import OpenamiServer, free_port

ROOT = Path(__file__).resolve().parents[1]
GUEST = Path(os.environ.get("OPENAMI_GUEST_DIR", Path.home() / ".cache" / "openami-ci" / "test-guest"))


def wait_for(what, check, timeout=600, every=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def wrk(url: str, duration: int) -> dict:
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: .*", out)
    return {"rps": rps, "p50": pct(50), "p99": pct(99),
            "non2xx": int(errors.group(1)) if errors else 0, "socket": sock.group(0) if sock else ""}


def report(name: str, direct: dict, proxied: dict):
    print(f"{name}:")
    for label, r in (("direct", direct), ("through the load balancer", proxied)):
        print(f"  {label:28s} {r['rps']:9.0f} req/s   p50 {r['p50']:7.3f} ms   p99 {r['p99']:7.3f} ms"
              f"   non-2xx {r['non2xx']} {r['socket']}")
    print(f"  ratio (proxied/direct req/s) {proxied['rps'] / direct['rps']:.2f}   "
          f"p50 added {proxied['p50'] - direct['p50']:+.3f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openami", default=str(ROOT / "target" / "release" / "openami"))
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()
    for tool in ("wrk", "busybox", "qemu-system-x86_64"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    guest = GUEST / "guest.raw"
    if not guest.exists():
        subprocess.run([str(ROOT / "scripts" / "build-test-guest"), str(GUEST)], check=True)

    with tempfile.TemporaryDirectory(prefix="openami-fleet-") as tmp:
        work = Path(tmp)
        server = OpenamiServer(Path(args.openami), work, extra_args=["--accel", "tcg"])
        www = work / "www"
        www.mkdir()
        (www / "index.html").write_text("host\n")
        host_port = free_port()
        httpd = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{host_port}", "-h", str(www)])
        try:
            run(server, guest, work, host_port, args.duration)
        finally:
            httpd.terminate()
            ec2 = server.ec2
            ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                   if i["State"]["Name"] != "terminated"]
            asg = server.client("autoscaling")
            for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
                asg.delete_auto_scaling_group(AutoScalingGroupName=g["AutoScalingGroupName"], ForceDelete=True)
            if ids:
                ec2.terminate_instances(InstanceIds=ids)
                ec2.get_waiter("instance_terminated").wait(InstanceIds=ids,
                                                           WaiterConfig={"Delay": 1, "MaxAttempts": 120})
            server.stop()


def register(server, guest: Path) -> str:
    ec2 = server.ec2
    out = subprocess.run([server.binary, "snapshot", "upload", str(guest), "--endpoint", server.endpoint,
                          "--region", "us-east-1", "--no-progress"], env=server.env(),
                         capture_output=True, text=True, check=True)
    snap = out.stdout.strip()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    return ec2.register_image(
        Name="bench-" + uuid.uuid4().hex[:8], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
    )["ImageId"]


def listener(elb, lb_arn, tg_arn) -> int:
    port = free_port()
    elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}])
    return port


def healthy(elb, tg, n):
    def check():
        h = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return len([d for d in h if d["TargetHealth"]["State"] == "healthy"]) == n
    return check


def run(server, guest, work, host_port, duration):
    ec2, elb, asg = server.ec2, server.client("elbv2"), server.client("autoscaling")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])[:3]
    sg = ec2.create_security_group(GroupName="bench-web", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    image = register(server, guest)
    lb = elb.create_load_balancer(Name="bench", Type="application",
                                  Subnets=[s["SubnetId"] for s in subnets])["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb_arn],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    lb = elb.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]
    addr = lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]

    def tg(name, target_type, port):
        return elb.create_target_group(Name=name, Protocol="HTTP", Port=port, VpcId=vpc, TargetType=target_type,
                                       HealthCheckIntervalSeconds=5, HealthyThresholdCount=2
                                       )["TargetGroups"][0]["TargetGroupArn"]

    # 1b. host server as an ip target
    host_tg = tg("bench-host", "ip", host_port)
    elb.register_targets(TargetGroupArn=host_tg, Targets=[{"Id": "127.0.0.1", "Port": host_port}])
    host_listener = listener(elb, lb_arn, host_tg)
    wait_for("the host target to be healthy", healthy(elb, host_tg, 1), timeout=60)
    report("host server (busybox httpd, ip target)", wrk(f"http://127.0.0.1:{host_port}/", duration),
           wrk(f"http://{addr}:{host_listener}/", duration))

    # 1a. one instance
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                            SecurityGroupIds=[sg])["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    ip = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PublicIpAddress"]
    vm_tg = tg("bench-vm", "instance", 80)
    elb.register_targets(TargetGroupArn=vm_tg, Targets=[{"Id": iid}])
    vm_listener = listener(elb, lb_arn, vm_tg)
    wait_for("the instance target to be healthy", healthy(elb, vm_tg, 1), timeout=300)
    report("instance (test guest's busybox httpd under TCG)", wrk(f"http://{ip}/", duration),
           wrk(f"http://{addr}:{vm_listener}/", duration))
    ec2.terminate_instances(InstanceIds=[iid])

    # 2. SetDesiredCapacity +3
    lt = ec2.create_launch_template(LaunchTemplateName="bench", LaunchTemplateData={
        "ImageId": image, "InstanceType": "t3.micro", "SecurityGroupIds": [sg]})["LaunchTemplate"]
    fleet_tg = tg("bench-fleet", "instance", 80)
    listener(elb, lb_arn, fleet_tg)
    asg.create_auto_scaling_group(AutoScalingGroupName="bench", MinSize=0, MaxSize=4, DesiredCapacity=0,
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Latest"},
                                  VPCZoneIdentifier=",".join(s["SubnetId"] for s in subnets),
                                  TargetGroupARNs=[fleet_tg], HealthCheckType="ELB", HealthCheckGracePeriod=300)

    def in_service(n):
        def check():
            g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["bench"])["AutoScalingGroups"][0]
            ok = [i for i in g["Instances"] if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"]
            return len(ok) == n and len(g["Instances"]) == n and healthy(elb, fleet_tg, n)()
        return check
    start = time.time()
    asg.set_desired_capacity(AutoScalingGroupName="bench", DesiredCapacity=3)
    wait_for("3 InService", in_service(3), timeout=900)
    scale_out = time.time() - start
    print(f"SetDesiredCapacity 0 -> 3 until all InService and healthy: {scale_out:.1f} s")

    # 3. instance refresh
    new_image = register(server, guest)
    v2 = ec2.create_launch_template_version(LaunchTemplateId=lt["LaunchTemplateId"], SourceVersion="1",
                                            LaunchTemplateData={"ImageId": new_image}
                                            )["LaunchTemplateVersion"]["VersionNumber"]
    start = time.time()
    rid = asg.start_instance_refresh(
        AutoScalingGroupName="bench",
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(v2)}},
        Preferences={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 134, "InstanceWarmup": 0}
    )["InstanceRefreshId"]

    def refreshed():
        r = asg.describe_instance_refreshes(AutoScalingGroupName="bench",
                                            InstanceRefreshIds=[rid])["InstanceRefreshes"][0]
        return r if r["Status"] in ("Successful", "Failed", "Cancelled") else None
    result = wait_for("the refresh", refreshed, timeout=1800, every=1)
    print(f"instance refresh of 3 instances: {result['Status']} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()

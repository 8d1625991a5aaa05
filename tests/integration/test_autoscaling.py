"""Amazon EC2 Auto Scaling over real QEMU instances, driven through boto3's `autoscaling`
client: groups launched from launch templates across zones, truthful scaling activities
(a bad AMI is a Failed activity at Progress 100), scale out/in by the termination policy
with scale-in protection, replacement of an instance whose QEMU was killed, lifecycle
hooks, instance refresh, restart of openami (kill -9) and ForceDelete.

At most 4 test-guest VMs run at once (TCG on 2 cores).
"""

import signal
import subprocess
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, Server, error_code
from test_instances import guest_image, guest_raw, needs_qemu, upload  # noqa: F401

VM_TIMEOUT = 300


def name(prefix="asg"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def clients(ec2, creds):
    return ec2(creds), ec2(creds, service="autoscaling")


def template(client, image, lt_name=None):
    lt_name = lt_name or name("lt")
    lt = client.create_launch_template(
        LaunchTemplateName=lt_name,
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    return lt["LaunchTemplateId"], lt_name


def default_subnets(client):
    subnets = client.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    return subnets


def group(asg, group_name):
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
    return groups[0] if groups else None


def wait_for(what, check, timeout=VM_TIMEOUT, interval=1.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def in_service(asg, group_name, count):
    def check():
        g = group(asg, group_name)
        ok = [i for i in g["Instances"]
              if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"]
        return ok if len(ok) == count and len(g["Instances"]) == count else None
    return wait_for(f"{count} InService instances in {group_name}", check)


def ec2_state(client, instance_id):
    res = client.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"] if res else "gone"


def qemu_pids(instance_id):
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()
            if "qemu-system" in line and f"guest={instance_id}," in line]


def force_delete(asg, client, group_name):
    g = group(asg, group_name)
    if g is None:
        return
    ids = [i["InstanceId"] for i in g["Instances"]]
    asg.delete_auto_scaling_group(AutoScalingGroupName=group_name, ForceDelete=True)
    wait_for("the group to be deleted", lambda: group(asg, group_name) is None, timeout=120)
    for i in ids:
        wait_for(f"{i} terminated", lambda i=i: ec2_state(client, i) in ("terminated", "gone"), timeout=120)


def test_api_rules_without_instances(ec2, alice):
    """Validation, errors and the bookkeeping actions on groups of zero instances."""
    client, asg = clients(ec2, alice)
    lt_id, lt_name = template(client, "ami-12345678901234567")
    subnets = default_subnets(client)
    g = name()

    with pytest.raises(ClientError) as e:
        asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchConfigurationName="lc", MinSize=0, MaxSize=1,
                                      AvailabilityZones=["us-east-1a"])
    assert error_code(e.value) == "ValidationError" and "launch templates" in str(e.value)
    with pytest.raises(ClientError) as e:
        asg.describe_launch_configurations()
    assert error_code(e.value) == "ValidationError"
    with pytest.raises(ClientError) as e:
        asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id},
                                      MinSize=2, MaxSize=3, DesiredCapacity=5, AvailabilityZones=["us-east-1a"])
    assert "Desired capacity:5 must be between the specified min size:2 and max size:3" in str(e.value)
    with pytest.raises(ClientError) as e:
        asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateName": "no-such-lt"},
                                      MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"])
    assert error_code(e.value) == "ValidationError"
    with pytest.raises(ClientError) as e:
        asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id},
                                      MinSize=0, MaxSize=1)
    assert error_code(e.value) == "ValidationError"

    asg.create_auto_scaling_group(
        AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateName": lt_name, "Version": "$Latest"},
        MinSize=0, MaxSize=4, VPCZoneIdentifier=",".join(s["SubnetId"] for s in subnets[:2]),
        HealthCheckType="EC2", HealthCheckGracePeriod=30, TerminationPolicies=["OldestInstance"],
        Tags=[{"Key": "team", "Value": "blue", "PropagateAtLaunch": True},
              {"Key": "cost", "Value": "7", "PropagateAtLaunch": False}],
        LifecycleHookSpecificationList=[{"LifecycleHookName": "h1",
                                         "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                                         "HeartbeatTimeout": 60, "DefaultResult": "CONTINUE"}])
    with pytest.raises(ClientError) as e:
        asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id},
                                      MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"])
    assert error_code(e.value) == "AlreadyExists"

    got = group(asg, g)
    assert got["LaunchTemplate"] == {"LaunchTemplateId": lt_id, "LaunchTemplateName": lt_name, "Version": "$Latest"}
    assert (got["MinSize"], got["MaxSize"], got["DesiredCapacity"], got["DefaultCooldown"]) == (0, 4, 0, 300)
    assert got["AvailabilityZones"] == sorted({s["AvailabilityZone"] for s in subnets[:2]})
    assert got["TerminationPolicies"] == ["OldestInstance"]
    assert got["AutoScalingGroupARN"].startswith("arn:aws:autoscaling:us-east-1:")
    assert got["AutoScalingGroupARN"].endswith(f":autoScalingGroupName/{g}")
    assert {t["Key"]: t["PropagateAtLaunch"] for t in got["Tags"]} == {"team": True, "cost": False}
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=g)["LifecycleHooks"]
    assert [(h["LifecycleHookName"], h["HeartbeatTimeout"], h["DefaultResult"]) for h in hooks] == [("h1", 60, "CONTINUE")]

    # Unknown names: an empty list for Describe, ValidationError for changes.
    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=["nope-" + g])["AutoScalingGroups"] == []
    with pytest.raises(ClientError) as e:
        asg.set_desired_capacity(AutoScalingGroupName="nope-" + g, DesiredCapacity=1)
    assert error_code(e.value) == "ValidationError" and "not found" in str(e.value)
    with pytest.raises(ClientError) as e:
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=9)
    assert "Desired capacity:9 must be between the specified min size:0 and max size:4" in str(e.value)

    # Filters and tags.
    assert [x["AutoScalingGroupName"] for x in asg.describe_auto_scaling_groups(
        Filters=[{"Name": "tag:team", "Values": ["blue"]}])["AutoScalingGroups"]] == [g]
    assert asg.describe_auto_scaling_groups(Filters=[{"Name": "tag:team", "Values": ["red"]}])["AutoScalingGroups"] == []
    asg.create_or_update_tags(Tags=[{"ResourceId": g, "ResourceType": "auto-scaling-group", "Key": "team",
                                     "Value": "red", "PropagateAtLaunch": True}])
    tags = asg.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [g]}])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "red", "cost": "7"}
    asg.delete_tags(Tags=[{"ResourceId": g, "ResourceType": "auto-scaling-group", "Key": "cost"}])
    assert [t["Key"] for t in asg.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [g]}])["Tags"]] == ["team"]

    # Processes.
    asg.suspend_processes(AutoScalingGroupName=g, ScalingProcesses=["Launch", "AZRebalance"])
    assert sorted(p["ProcessName"] for p in group(asg, g)["SuspendedProcesses"]) == ["AZRebalance", "Launch"]
    asg.resume_processes(AutoScalingGroupName=g, ScalingProcesses=["Launch"])
    assert [p["ProcessName"] for p in group(asg, g)["SuspendedProcesses"]] == ["AZRebalance"]
    with pytest.raises(ClientError) as e:
        asg.suspend_processes(AutoScalingGroupName=g, ScalingProcesses=["Dance"])
    assert error_code(e.value) == "ValidationError"

    # Update: a larger MinSize raises desired; max < min is refused.
    asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0, MaxSize=2, DefaultCooldown=60)
    with pytest.raises(ClientError) as e:
        asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=3, MaxSize=2)
    assert error_code(e.value) == "ValidationError"
    assert group(asg, g)["DefaultCooldown"] == 60

    # The static lists.
    assert {"ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"} == {
        a["AdjustmentType"] for a in asg.describe_adjustment_types()["AdjustmentTypes"]}
    assert "OldestLaunchTemplate" in asg.describe_termination_policy_types()["TerminationPolicyTypes"]
    assert "ReplaceUnhealthy" in [p["ProcessName"] for p in asg.describe_scaling_process_types()["Processes"]]
    assert asg.describe_lifecycle_hook_types()["LifecycleHookTypes"] == [
        "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"]
    assert asg.describe_account_limits()["NumberOfAutoScalingGroups"] >= 1
    assert "autoscaling:EC2_INSTANCE_LAUNCH" in asg.describe_auto_scaling_notification_types()["AutoScalingNotificationTypes"]
    with pytest.raises(ClientError) as e:
        asg.put_warm_pool(AutoScalingGroupName=g)
    assert error_code(e.value) == "InvalidAction"

    asg.delete_auto_scaling_group(AutoScalingGroupName=g)
    assert group(asg, g) is None
    with pytest.raises(ClientError) as e:
        asg.delete_auto_scaling_group(AutoScalingGroupName=g)
    assert error_code(e.value) == "ValidationError" and "not found" in str(e.value)


def test_bad_ami_is_a_failed_activity(ec2, alice):
    """A launch that the engine refuses is a Failed activity at Progress 100 with a
    StatusMessage (what Terraform's capacity waiter stops on); the group keeps trying."""
    client, asg = clients(ec2, alice)
    lt_id, _ = template(client, "ami-0123456789abcdef0")
    g = name()
    asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id},
                                  MinSize=1, MaxSize=1, AvailabilityZones=["us-east-1a"])
    try:
        def failed():
            acts = asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
            return [a for a in acts if a["StatusCode"] == "Failed"]
        act = wait_for("a Failed activity", failed, timeout=60)[0]
        assert act["Progress"] == 100
        assert "ami-0123456789abcdef0" in act["StatusMessage"]
        assert act["Description"].startswith("Launching a new EC2 instance")
        assert "EndTime" in act and act["AutoScalingGroupName"] == g
        assert "increasing the capacity from 0 to 1" in act["Cause"]
        assert group(asg, g)["Instances"] == []
    finally:
        asg.delete_auto_scaling_group(AutoScalingGroupName=g, ForceDelete=True)
        wait_for("the group to be deleted", lambda: group(asg, g) is None, timeout=60)


@needs_qemu
def test_group_keeps_real_instances_at_desired_capacity(ec2, alice, guest_image):
    """Two instances across zones; scale in respects protection; a killed QEMU is
    replaced; TerminateInstanceInAutoScalingGroup; ForceDelete terminates all."""
    client, asg = clients(ec2, alice)
    lt_id, lt_name = template(client, guest_image[0])
    subnets = default_subnets(client)
    g = name()
    asg.create_auto_scaling_group(
        AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id}, MinSize=0, MaxSize=3, DesiredCapacity=2,
        VPCZoneIdentifier=",".join(s["SubnetId"] for s in subnets[:2]), DefaultCooldown=0,
        Tags=[{"Key": "team", "Value": "blue", "PropagateAtLaunch": True},
              {"Key": "secret", "Value": "x", "PropagateAtLaunch": False}])
    try:
        members = in_service(asg, g, 2)
        assert {m["AvailabilityZone"] for m in members} == {s["AvailabilityZone"] for s in subnets[:2]}
        for m in members:
            assert m["LaunchTemplate"] == {"LaunchTemplateId": lt_id, "LaunchTemplateName": lt_name, "Version": "1"}
            inst = client.describe_instances(InstanceIds=[m["InstanceId"]])["Reservations"][0]["Instances"][0]
            assert inst["State"]["Name"] == "running"
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            assert tags["aws:autoscaling:groupName"] == g
            assert tags["team"] == "blue" and "secret" not in tags
            assert tags["aws:ec2launchtemplate:id"] == lt_id
        details = asg.describe_auto_scaling_instances(InstanceIds=[m["InstanceId"] for m in members])
        assert {d["HealthStatus"] for d in details["AutoScalingInstances"]} == {"HEALTHY"}
        acts = asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
        launched = {a["Description"].split(": ")[-1]: a for a in acts}
        for m in members:
            a = launched[m["InstanceId"]]
            assert (a["StatusCode"], a["Progress"]) == ("Successful", 100)
            assert "a user request created an AutoScalingGroup changing the desired capacity from 0 to 2" in a["Cause"]

        # Scale out to 3, then in to 1 with the first instance protected.
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=3)
        three = in_service(asg, g, 3)
        keep = members[0]["InstanceId"]
        asg.set_instance_protection(AutoScalingGroupName=g, InstanceIds=[keep], ProtectedFromScaleIn=True)
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
        left = in_service(asg, g, 1)
        assert left[0]["InstanceId"] == keep and left[0]["ProtectedFromScaleIn"]
        for m in three:
            if m["InstanceId"] != keep:
                wait_for("terminated", lambda i=m["InstanceId"]: ec2_state(client, i) in ("terminated", "gone"), 120)
        ends = [a for a in asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
                if a["Description"].startswith("Terminating EC2 instance")]
        assert len(ends) == 2 and all(a["StatusCode"] == "Successful" for a in ends)
        assert all("shrinking the capacity" in a["Cause"] for a in ends)

        # A killed QEMU: the instance leaves `running`, the group replaces it.
        asg.set_instance_protection(AutoScalingGroupName=g, InstanceIds=[keep], ProtectedFromScaleIn=False)
        pids = qemu_pids(keep)
        assert pids, "no QEMU process for " + keep
        for pid in pids:
            subprocess.run(["kill", "-9", str(pid)], check=False)

        def replaced():
            gg = group(asg, g)
            ids = [i["InstanceId"] for i in gg["Instances"] if i["LifecycleState"] == "InService"]
            return ids if ids and keep not in ids else None
        new = wait_for("a replacement", replaced)[0]
        reasons = [a for a in asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
                   if a["Description"] == f"Terminating EC2 instance: {keep}"]
        assert reasons and "EC2 instance status check" in reasons[0]["Cause"]

        # Terminate without decrementing: replaced again; with decrementing: desired 0.
        out = asg.terminate_instance_in_auto_scaling_group(InstanceId=new, ShouldDecrementDesiredCapacity=True)
        assert out["Activity"]["Description"] == f"Terminating EC2 instance: {new}"
        wait_for("empty", lambda: group(asg, g)["Instances"] == [], timeout=120)
        assert group(asg, g)["DesiredCapacity"] == 0

        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
        ids = [m["InstanceId"] for m in in_service(asg, g, 2)]
        with pytest.raises(ClientError) as e:
            asg.delete_auto_scaling_group(AutoScalingGroupName=g)
        assert error_code(e.value) == "ResourceInUse"
        assert "while there are instances" in str(e.value)
        force_delete(asg, client, g)
        for i in ids:
            assert ec2_state(client, i) in ("terminated", "gone")
            assert not qemu_pids(i)
    finally:
        force_delete(asg, client, g)


@needs_qemu
def test_launch_lifecycle_hook_holds_until_completed(ec2, alice, guest_image):
    client, asg = clients(ec2, alice)
    lt_id, _ = template(client, guest_image[0])
    g = name()
    asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id},
                                  MinSize=0, MaxSize=2, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])
    try:
        asg.put_lifecycle_hook(AutoScalingGroupName=g, LifecycleHookName="wait-launch",
                               LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
                               HeartbeatTimeout=600, DefaultResult="ABANDON")
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)

        def waiting():
            inst = group(asg, g)["Instances"]
            return inst if inst and inst[0]["LifecycleState"] == "Pending:Wait" else None
        iid = wait_for("Pending:Wait", waiting)[0]["InstanceId"]
        assert ec2_state(client, iid) == "running"
        time.sleep(4)
        assert group(asg, g)["Instances"][0]["LifecycleState"] == "Pending:Wait"
        acts = asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
        assert acts[0]["StatusCode"] == "MidLifecycleAction"
        asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=g, LifecycleHookName="wait-launch",
                                              InstanceId=iid)
        with pytest.raises(ClientError) as e:
            asg.complete_lifecycle_action(AutoScalingGroupName=g, LifecycleHookName="wait-launch",
                                          LifecycleActionToken="00000000-0000-0000-0000-000000000000",
                                          LifecycleActionResult="CONTINUE")
        assert error_code(e.value) == "ValidationError"
        asg.complete_lifecycle_action(AutoScalingGroupName=g, LifecycleHookName="wait-launch",
                                      InstanceId=iid, LifecycleActionResult="CONTINUE")
        assert in_service(asg, g, 1)[0]["InstanceId"] == iid
        act = [a for a in asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
               if a["Description"] == f"Launching a new EC2 instance: {iid}"][0]
        assert (act["StatusCode"], act["Progress"]) == ("Successful", 100)
        asg.delete_lifecycle_hook(AutoScalingGroupName=g, LifecycleHookName="wait-launch")
        assert asg.describe_lifecycle_hooks(AutoScalingGroupName=g)["LifecycleHooks"] == []

        # A terminate hook holds the instance in Terminating:Wait, running, until completed.
        asg.put_lifecycle_hook(AutoScalingGroupName=g, LifecycleHookName="wait-end",
                               LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                               HeartbeatTimeout=600, DefaultResult="CONTINUE")
        asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=0)
        wait_for("Terminating:Wait",
                 lambda: [i for i in group(asg, g)["Instances"] if i["LifecycleState"] == "Terminating:Wait"],
                 timeout=60)
        time.sleep(3)
        assert group(asg, g)["Instances"][0]["LifecycleState"] == "Terminating:Wait"
        assert ec2_state(client, iid) == "running"
        asg.complete_lifecycle_action(AutoScalingGroupName=g, LifecycleHookName="wait-end",
                                      InstanceId=iid, LifecycleActionResult="ABANDON")
        wait_for("the instance to leave the group", lambda: group(asg, g)["Instances"] == [], timeout=120)
        wait_for("terminated", lambda: ec2_state(client, iid) in ("terminated", "gone"), timeout=120)
        end = [a for a in asg.describe_scaling_activities(AutoScalingGroupName=g)["Activities"]
               if a["Description"] == f"Terminating EC2 instance: {iid}"][0]
        assert (end["StatusCode"], end["Progress"]) == ("Successful", 100)
    finally:
        force_delete(asg, client, g)


@needs_qemu
def test_group_survives_an_openami_kill(tmp_path, guest_raw):  # noqa: F811
    """kill -9 of openami: the next start finds the group and its instance and goes on
    controlling it."""
    srv = Server(tmp_path / "data")
    try:
        creds = srv.create_account("asg-restart")

        def make(service):
            return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                                aws_access_key_id=creds["AccessKeyId"],
                                aws_secret_access_key=creds["SecretAccessKey"],
                                config=Config(retries={"max_attempts": 1}))
        client, asg = make("ec2"), make("autoscaling")
        snap = upload(srv, creds, guest_raw)
        client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
        image = client.register_image(Name="asg-restart", RootDeviceName="/dev/xvda", Architecture="x86_64",
                                      BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                                            "Ebs": {"SnapshotId": snap}}])["ImageId"]
        lt_id, _ = template(client, image)
        asg.create_auto_scaling_group(AutoScalingGroupName="kept", LaunchTemplate={"LaunchTemplateId": lt_id},
                                      MinSize=1, MaxSize=2, AvailabilityZones=["us-east-1a"])
        first = in_service(asg, "kept", 1)[0]["InstanceId"]

        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.log.close()
        srv = Server(srv.data_dir, port=srv.port)
        g = group(asg, "kept")
        assert [(i["InstanceId"], i["LifecycleState"]) for i in g["Instances"]] == [(first, "InService")]
        assert ec2_state(client, first) == "running"
        asg.set_desired_capacity(AutoScalingGroupName="kept", DesiredCapacity=2)
        ids = [i["InstanceId"] for i in in_service(asg, "kept", 2)]
        assert first in ids
        force_delete(asg, client, "kept")
    finally:
        if srv.proc.poll() is None:
            srv.stop()


def refresh_of(asg, group_name, refresh_id):
    return asg.describe_instance_refreshes(AutoScalingGroupName=group_name,
                                           InstanceRefreshIds=[refresh_id])["InstanceRefreshes"][0]


@needs_qemu
def test_instance_refresh_replaces_every_instance_without_losing_capacity(ec2, alice, guest_image):
    """Group of 3 at MinHealthyPercentage 100: a replacement is launched and in service
    before each old instance terminates, so 3 healthy instances are always in service;
    the refresh ends Successful with every instance on the new version. A refresh to a
    version whose launches fail ends Failed and leaves the group as it was."""
    client, asg = clients(ec2, alice)
    lt_id, _ = template(client, guest_image[0])
    g = name()
    asg.create_auto_scaling_group(AutoScalingGroupName=g, LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "1"},
                                  MinSize=1, MaxSize=4, DesiredCapacity=3, AvailabilityZones=["us-east-1a", "us-east-1b"])
    try:
        old = {m["InstanceId"] for m in in_service(asg, g, 3)}
        with pytest.raises(ClientError) as e:
            asg.cancel_instance_refresh(AutoScalingGroupName=g)
        assert error_code(e.value) == "ActiveInstanceRefreshNotFound"
        with pytest.raises(ClientError) as e:
            asg.start_instance_refresh(AutoScalingGroupName=g, Preferences={"AutoRollback": True})
        assert error_code(e.value) == "IrreversibleInstanceRefresh"

        client.create_launch_template_version(LaunchTemplateId=lt_id, SourceVersion="1", VersionDescription="v2",
                                              LaunchTemplateData={"ImageId": guest_image[0]})
        rid = asg.start_instance_refresh(
            AutoScalingGroupName=g, Strategy="Rolling",
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt_id, "Version": "2"}},
            Preferences={"MinHealthyPercentage": 100, "InstanceWarmup": 1})["InstanceRefreshId"]
        with pytest.raises(ClientError) as e:
            asg.start_instance_refresh(AutoScalingGroupName=g)
        assert error_code(e.value) == "InstanceRefreshInProgress"

        fewest = 3
        deadline = time.time() + 2 * VM_TIMEOUT
        while time.time() < deadline:
            r = refresh_of(asg, g, rid)
            healthy = [i for i in group(asg, g)["Instances"]
                       if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"]
            fewest = min(fewest, len(healthy))
            if r["Status"] not in ("Pending", "InProgress"):
                break
            time.sleep(0.5)
        assert r["Status"] == "Successful", r
        assert r["PercentageComplete"] == 100 and r["Preferences"]["MinHealthyPercentage"] == 100
        assert fewest == 3, "capacity dropped below 3 healthy instances during the refresh"
        now = in_service(asg, g, 3)
        assert not ({m["InstanceId"] for m in now} & old)
        assert {m["LaunchTemplate"]["Version"] for m in now} == {"2"}
        assert group(asg, g)["LaunchTemplate"]["Version"] == "2"

        # Launches of version 3 fail (no such image): the refresh fails, nothing is lost.
        client.create_launch_template_version(LaunchTemplateId=lt_id, SourceVersion="2",
                                              LaunchTemplateData={"ImageId": "ami-0fedcba9876543210"})
        rid = asg.start_instance_refresh(
            AutoScalingGroupName=g,
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": lt_id, "Version": "3"}},
            Preferences={"MinHealthyPercentage": 100, "InstanceWarmup": 1})["InstanceRefreshId"]
        r = wait_for("the refresh to fail",
                     lambda: (lambda r: r if r["Status"] not in ("Pending", "InProgress") else None)(refresh_of(asg, g, rid)),
                     timeout=240)
        assert r["Status"] == "Failed" and "ami-0fedcba9876543210" in r["StatusReason"]
        assert {m["InstanceId"] for m in in_service(asg, g, 3)} == {m["InstanceId"] for m in now}
        assert group(asg, g)["LaunchTemplate"]["Version"] == "2"
    finally:
        force_delete(asg, client, g)

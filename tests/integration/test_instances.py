"""Instances as real QEMU machines, driven through boto3 only.

The test guest (scripts/build-test-guest: a cloud kernel and a busybox initramfs on a
64 MiB disk) is uploaded with `openami snapshot upload` (the public EBS direct API) and
registered as an EBS-backed image, as a user would. The guest runs its UserData as a
shell script and powers off; markers are written 100 MiB into a disk, past the guest's
own 64 MiB, and read back in a later boot, which prints them on the serial console that
GetConsoleOutput returns.
"""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, ROOT, error_code, openami_bin

VM_WAITER = {"Delay": 1, "MaxAttempts": 240}
MARKER_OFFSET_MIB = 100

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None and os.environ.get("CI") != "true",
    reason="qemu-system-x86_64 is not installed (scripts/install-vm-deps installs it)",
)


def guest_dir() -> Path:
    return Path(os.environ.get("OPENAMI_GUEST_DIR",
                               Path.home() / ".cache" / "openami-ci" / "test-guest"))


@pytest.fixture(scope="session")
def guest_raw():
    out = guest_dir()
    subprocess.run([str(ROOT / "scripts" / "build-test-guest"), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out / "guest.raw"


def cli_env(creds):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def upload(server, creds, path) -> str:
    out = subprocess.run([openami_bin(), "snapshot", "upload", str(path), "--endpoint", server.endpoint,
                          "--region", "us-east-1", "--no-progress"],
                         env=cli_env(creds), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="session")
def guest_image(server, alice, ec2, guest_raw):
    """An EBS-backed image of the test guest owned by alice: (image id, snapshot id)."""
    client = ec2(alice)
    snap = upload(server, alice, guest_raw)
    client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    image = client.register_image(
        Name="test-guest-" + uuid.uuid4().hex[:8], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", BootMode="legacy-bios",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
    )["ImageId"]
    return image, snap


def script(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


def write_marker(device: str, marker: str) -> str:
    return (f"echo '{marker}' | dd of={device} bs=1M seek={MARKER_OFFSET_MIB} conv=notrunc 2>/dev/null\n"
            f"sync\necho wrote-marker")


def read_marker(device: str, wait: bool = False) -> str:
    poll = (f"i=0; while [ ! -b {device} ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done\n"
            if wait else "")
    return (poll + f"echo \"marker=[$(dd if={device} bs=1M skip={MARKER_OFFSET_MIB} count=1 2>/dev/null"
            f" | head -c 40 | tr -d '\\000\\n')]\"")


def console(client, instance_id) -> str:
    # The wire carries base64; botocore decodes it (as for AWS).
    return client.get_console_output(InstanceId=instance_id).get("Output", "")


def launch(client, image, user_data=None, **kw):
    args = dict(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    if user_data is not None:
        args["UserData"] = user_data
    args.update(kw)
    return client.run_instances(**args)["Instances"][0]["InstanceId"]


def wait_state(client, instance_id, waiter):
    client.get_waiter(waiter).wait(InstanceIds=[instance_id], WaiterConfig=VM_WAITER)


def wait_until(client, instance_id, state, timeout=240):
    """Polls until the instance is in `state` (the SDK's instance_stopped waiter fails on
    `pending`, which a guest that powers itself off within seconds passes through)."""
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        inst = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        name = inst["State"]["Name"]
        if not seen or seen[-1] != name:
            seen.append(name)
        if name == state:
            return inst
        time.sleep(0.5)
    # Say what the guest printed: a hang at boot and a script that never ended look alike otherwise.
    tail = console(client, instance_id)[-3000:]
    raise AssertionError(f"{instance_id} never reached {state}: went through {seen}; console:\n{tail}")


def terminate(client, *ids):
    client.terminate_instances(InstanceIds=list(ids))
    wait_state(client, ids[0], "instance_terminated")


def qemu_processes(instance_id: str) -> list:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{instance_id}"], capture_output=True, text=True)
    return out.stdout.split()


@needs_qemu
def test_marker_survives_stop_start_and_create_image(ec2, alice, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    marker = "M-" + uuid.uuid4().hex[:12]
    iid = launch(client, image, script(write_marker("/dev/vda", marker)))
    inst = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] in ("pending", "running")
    assert inst["RootDeviceType"] == "ebs" and inst["InstanceType"] == "t3.micro"
    # The guest powers itself off after its user data: shutdown behaviour `stop`.
    wait_until(client, iid, "stopped")
    inst = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    out = console(client, iid)
    assert "openami-guest: booted" in out and "wrote-marker" in out, out
    assert not qemu_processes(iid)

    # Start again with a task that reads the marker back.
    client.modify_instance_attribute(InstanceId=iid, UserData={"Value": script(read_marker("/dev/vda")).encode()})
    client.start_instances(InstanceIds=[iid])
    wait_until(client, iid, "stopped")
    assert f"marker=[{marker}]" in console(client, iid)

    # CreateImage of the stopped instance; a second instance from it sees the marker.
    new_image = client.create_image(InstanceId=iid, Name="from-" + iid)["ImageId"]
    client.get_waiter("image_available").wait(ImageIds=[new_image], WaiterConfig=FAST_WAITER)
    img = client.describe_images(ImageIds=[new_image])["Images"][0]
    assert img["RootDeviceType"] == "ebs" and img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"].startswith("snap-")
    second = launch(client, new_image, script(read_marker("/dev/vda")))
    wait_until(client, second, "stopped")
    assert f"marker=[{marker}]" in console(client, second)

    # DeleteOnTermination: the image's root volumes go with their instances.
    root = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    terminate(client, iid, second)
    with pytest.raises(ClientError) as e:
        client.describe_volumes(VolumeIds=[root])
    assert error_code(e.value) == "InvalidVolume.NotFound"


@needs_qemu
def test_hot_plugged_volume_is_written_and_moves(ec2, alice, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    marker = "V-" + uuid.uuid4().hex[:12]
    task = script(read_marker("/dev/vdb", wait=True).replace("marker=", "before=") + "\n"
                  + write_marker("/dev/vdb", marker) + "\n" + read_marker("/dev/vdb"))
    iid = launch(client, image, task)
    wait_state(client, iid, "instance_running")
    zone = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]
    vol = client.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    att = client.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    assert att["State"] in ("attaching", "attached")
    # The root volume of a running instance cannot be detached.
    root = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    with pytest.raises(ClientError) as e:
        client.detach_volume(VolumeId=root)
    assert error_code(e.value) == "IncorrectInstanceState"
    wait_until(client, iid, "stopped")
    assert f"marker=[{marker}]" in console(client, iid), console(client, iid)
    v = client.describe_volumes(VolumeIds=[vol])["Volumes"][0]
    assert v["State"] == "in-use" and v["Attachments"][0]["InstanceId"] == iid

    client.detach_volume(VolumeId=vol)
    client.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    # Attach to another (stopped) instance, where it is a boot-time disk.
    other = launch(client, image, script("true"))
    wait_until(client, other, "stopped")
    client.attach_volume(VolumeId=vol, InstanceId=other, Device="/dev/sdg")
    client.modify_instance_attribute(InstanceId=other, UserData={"Value": script(read_marker("/dev/vdb", wait=True)).encode()})
    client.start_instances(InstanceIds=[other])
    wait_until(client, other, "stopped")
    assert f"marker=[{marker}]" in console(client, other), console(client, other)
    terminate(client, iid, other)
    # Attached volumes without DeleteOnTermination survive, detached.
    v = client.describe_volumes(VolumeIds=[vol])["Volumes"][0]
    assert v["State"] == "available" and not v["Attachments"]
    client.delete_volume(VolumeId=vol)


@needs_qemu
def test_stop_of_an_idle_guest_and_reboot(ec2, alice, guest_image):
    client = ec2(alice)
    image, _ = guest_image
    iid = launch(client, image)  # no user data: the guest idles
    wait_state(client, iid, "instance_running")
    deadline = time.time() + 60
    while "no user data, idle" not in console(client, iid) and time.time() < deadline:
        time.sleep(0.5)
    assert "no user data, idle" in console(client, iid)
    status = client.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
    assert status and status[0]["InstanceState"]["Name"] == "running"
    client.reboot_instances(InstanceIds=[iid])
    deadline = time.time() + 60
    while console(client, iid).count("openami-guest: booted") < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert console(client, iid).count("openami-guest: booted") >= 2
    changes = client.stop_instances(InstanceIds=[iid])["StoppingInstances"]
    assert changes[0]["PreviousState"]["Name"] == "running" and changes[0]["CurrentState"]["Code"] == 64
    wait_until(client, iid, "stopped")
    assert not qemu_processes(iid)
    terminate(client, iid)


@needs_qemu
def test_instance_store_data_is_lost_at_termination(server, ec2, alice, guest_image):
    client = ec2(alice)
    _, snap = guest_image
    image = client.register_image(Name="store-" + uuid.uuid4().hex[:8], ImageLocation=snap,
                                  Architecture="x86_64", RootDeviceName="/dev/sda1",
                                  VirtualizationType="hvm")["ImageId"]
    assert client.describe_images(ImageIds=[image])["Images"][0]["RootDeviceType"] == "instance-store"
    iid = launch(client, image)
    wait_state(client, iid, "instance_running")
    with pytest.raises(ClientError) as e:
        client.stop_instances(InstanceIds=[iid])
    assert error_code(e.value) == "UnsupportedOperation"
    with pytest.raises(ClientError) as e:
        client.create_image(InstanceId=iid, Name="nope-" + iid)
    assert error_code(e.value) == "UnsupportedOperation"
    disks = server.data_dir / "regions" / "us-east-1" / "instances" / iid / "disks"
    assert (disks / "root.raw").exists()
    terminate(client, iid)
    assert not disks.exists()
    # A guest powering itself off terminates an instance-store instance.
    marker = "S-" + uuid.uuid4().hex[:8]
    second = launch(client, image, script(write_marker("/dev/vda", marker)))
    wait_until(client, second, "terminated")
    assert "wrote-marker" in console(client, second)


@needs_qemu
def test_launch_permission_is_required(ec2, alice, bob, guest_image):
    image, _ = guest_image
    with pytest.raises(ClientError) as e:
        launch(ec2(bob), image)
    assert error_code(e.value) == "InvalidAMIID.NotFound"
    ec2(alice).modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
    try:
        iid = launch(ec2(bob), image, script("true"))
        wait_until(ec2(bob), iid, "stopped")
        assert "openami-guest: booted" in console(ec2(bob), iid)
        terminate(ec2(bob), iid)
    finally:
        ec2(alice).modify_image_attribute(ImageId=image, LaunchPermission={"Remove": [{"UserId": bob["AccountId"]}]})


@needs_qemu
def test_run_instances_api_rules(ec2, alice, guest_image):
    client = ec2(alice)
    image, snap = guest_image
    token = uuid.uuid4().hex
    res = client.run_instances(
        ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.nano", ClientToken=token,
        UserData=script("true"), DisableApiTermination=True,
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 3, "DeleteOnTermination": False}},
                             {"DeviceName": "/dev/sdh", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3"}},
                             {"DeviceName": "/dev/sdi", "NoDevice": ""}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "pair"}]},
                           {"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "x"}]}],
    )
    ids = [i["InstanceId"] for i in res["Instances"]]
    assert len(ids) == 2 and sorted(i["AmiLaunchIndex"] for i in res["Instances"]) == [0, 1]
    again = client.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.nano", ClientToken=token)
    assert sorted(i["InstanceId"] for i in again["Instances"]) == sorted(ids)
    inst = client.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["pair"]},
                                              {"Name": "image-id", "Values": [image]}])
    found = [i for r in inst["Reservations"] for i in r["Instances"]]
    assert sorted(i["InstanceId"] for i in found) == sorted(ids)
    first = found[0]
    devices = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in first["BlockDeviceMappings"]}
    assert set(devices) == {"/dev/xvda", "/dev/sdh"}
    vols = {v["VolumeId"]: v for v in client.describe_volumes(VolumeIds=list(devices.values()))["Volumes"]}
    root = vols[devices["/dev/xvda"]]
    assert root["Size"] == 3 and root["SnapshotId"] == snap and root["State"] == "in-use"
    assert {"Key": "team", "Value": "x"} in root["Tags"]
    assert vols[devices["/dev/sdh"]]["VolumeType"] == "gp3"
    bdm = client.describe_instance_attribute(InstanceId=first["InstanceId"], Attribute="blockDeviceMapping")
    assert {m["DeviceName"]: m["Ebs"]["DeleteOnTermination"] for m in bdm["BlockDeviceMappings"]} == {
        "/dev/xvda": False, "/dev/sdh": True}
    filtered = client.describe_instances(Filters=[{"Name": "block-device-mapping.volume-id",
                                                   "Values": [devices["/dev/sdh"]]}])
    assert [i["InstanceId"] for r in filtered["Reservations"] for i in r["Instances"]] == [first["InstanceId"]]
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-id", "Values": ids}], PaginationConfig={"PageSize": 5})
    assert sorted(i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]) == sorted(ids)

    for iid in ids:
        wait_until(client, iid, "stopped")
    with pytest.raises(ClientError) as e:
        client.terminate_instances(InstanceIds=ids)
    assert error_code(e.value) == "OperationNotPermitted"
    for iid in ids:
        client.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
    attr = client.describe_instance_attribute(InstanceId=ids[0], Attribute="disableApiTermination")
    assert attr["DisableApiTermination"]["Value"] is False
    terminate(client, *ids)
    client.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=VM_WAITER)
    # The root volumes were kept (DeleteOnTermination false), the extra ones deleted.
    kept = client.describe_volumes(Filters=[{"Name": "snapshot-id", "Values": [snap]},
                                            {"Name": "size", "Values": ["3"]}])["Volumes"]
    assert len([v for v in kept if v["State"] == "available"]) >= 2
    for v in kept:
        if v["State"] == "available":
            client.delete_volume(VolumeId=v["VolumeId"])
    with pytest.raises(ClientError) as e:
        client.describe_volumes(VolumeIds=[devices["/dev/sdh"]])
    assert error_code(e.value) == "InvalidVolume.NotFound"


def test_run_instances_refusals(ec2, alice, bob):
    client = ec2(alice)
    cases = [
        (dict(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1), "InvalidAMIID.NotFound"),
        (dict(ImageId="ami-zz", MinCount=1, MaxCount=1), "InvalidAMIID.Malformed"),
        (dict(ImageId="ami-0123456789abcdef0", MinCount=0, MaxCount=1), "InvalidParameterValue"),
        (dict(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, InstanceType="x9.huge"),
         "InvalidParameterValue"),
    ]
    for args, code in cases:
        with pytest.raises(ClientError) as e:
            client.run_instances(**args)
        assert error_code(e.value) == code, (args, e.value)
    with pytest.raises(ClientError) as e:
        client.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as e:
        client.stop_instances(InstanceIds=["i-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidInstanceID.NotFound"


@needs_qemu
def test_uefi_boot(ec2, alice, guest_image):
    client = ec2(alice)
    _, snap = guest_image
    image = client.register_image(
        Name="uefi-guest-" + uuid.uuid4().hex[:8], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm", BootMode="uefi",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    iid = launch(client, image, script("echo firmware=$([ -d /sys/firmware/efi ] && echo uefi || echo bios)"))
    inst = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["BootMode"] == "uefi" and inst["CurrentInstanceBootMode"] == "uefi"
    wait_until(client, iid, "stopped")
    assert "firmware=uefi" in console(client, iid), console(client, iid)
    terminate(client, iid)


def ticks(text: str) -> int:
    """The last `tick N` the guest printed (0 if none)."""
    found = [int(line.split()[1]) for line in text.splitlines()
             if line.startswith("tick ") and line.split()[1].isdigit()]
    return max(found, default=0)


@needs_qemu
def test_running_instances_survive_an_openami_restart(tmp_path, guest_raw):
    """SIGKILL of openami: its machines keep running, QEMU holds their disk I/O, and the
    next start adopts them (same QEMU process) and serves their volumes again, so the
    guest carries on writing. SIGTERM ends the machines; the next start boots them again."""
    from conftest import Server
    import signal
    import boto3
    from botocore.config import Config

    srv = Server(tmp_path / "data")
    try:
        creds = srv.create_account("restarter")
        client = boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                              aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                              config=Config(retries={"max_attempts": 1}))
        snap = upload(srv, creds, guest_raw)
        client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
        image = client.register_image(Name="restart-guest", RootDeviceName="/dev/xvda", Architecture="x86_64",
                                      BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
        # Every half second: write a counter to the root volume (fsync) and print it.
        task = script("i=0\nwhile true; do i=$((i+1)); echo \"disk-tick $i\" | "
                      f"dd of=/dev/vda bs=1M seek={MARKER_OFFSET_MIB} conv=notrunc,fsync 2>/dev/null "
                      "&& echo \"tick $i\"; sleep 0.5; done")
        iid = launch(client, image, task)
        wait_state(client, iid, "instance_running")
        deadline = time.time() + 120
        while ticks(console(client, iid)) < 3 and time.time() < deadline:
            time.sleep(0.5)
        assert ticks(console(client, iid)) >= 3
        before = qemu_processes(iid)
        assert len(before) == 1

        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.log.close()
        assert qemu_processes(iid) == before  # the machine outlives openami
        time.sleep(2)
        srv = Server(srv.data_dir, port=srv.port)
        assert client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
        assert qemu_processes(iid) == before  # adopted, not rebooted
        seen = ticks(console(client, iid))
        deadline = time.time() + 90
        while ticks(console(client, iid)) < seen + 5 and time.time() < deadline:
            time.sleep(0.5)
        assert ticks(console(client, iid)) >= seen + 5, console(client, iid)[-2000:]
        assert console(client, iid).count("openami-guest: booted") == 1

        assert srv.stop() == 0
        assert not qemu_processes(iid)
        srv = Server(srv.data_dir, port=srv.port)
        wait_state(client, iid, "instance_running")
        deadline = time.time() + 60
        while "openami-guest: booted" not in console(client, iid) and time.time() < deadline:
            time.sleep(0.5)
        assert "openami-guest: booted" in console(client, iid)
        assert qemu_processes(iid) and qemu_processes(iid) != before
        terminate(client, iid)
        assert not qemu_processes(iid)
    finally:
        if srv.proc.poll() is None:
            srv.stop()


@needs_qemu
def test_create_image_of_a_running_instance(ec2, alice, guest_image):
    """CreateImage while the guest runs: its volumes are snapshotted at one point in time
    (vCPUs paused); without NoReboot the machine is rebooted, as EC2 does."""
    client = ec2(alice)
    image, _ = guest_image
    marker = "R-" + uuid.uuid4().hex[:12]
    iid = launch(client, image, script(write_marker("/dev/vda", marker) + "\nsleep 600"))
    deadline = time.time() + 120
    while "wrote-marker" not in console(client, iid) and time.time() < deadline:
        time.sleep(0.5)
    assert "wrote-marker" in console(client, iid)
    quiet = client.create_image(InstanceId=iid, Name="running-" + iid, NoReboot=True)["ImageId"]
    rebooted = client.create_image(InstanceId=iid, Name="rebooted-" + iid, NoReboot=False)["ImageId"]
    deadline = time.time() + 120
    while console(client, iid).count("openami-guest: booted") < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert console(client, iid).count("openami-guest: booted") >= 2  # the reboot
    client.get_waiter("image_available").wait(ImageIds=[quiet, rebooted], WaiterConfig=FAST_WAITER)
    for new_image in (quiet, rebooted):
        second = launch(client, new_image, script(read_marker("/dev/vda")))
        wait_until(client, second, "stopped")
        assert f"marker=[{marker}]" in console(client, second)
        terminate(client, second)
    terminate(client, iid)


@needs_qemu
def test_aws_cli_and_boto3_resources(aws, ec2, alice, guest_image, server):
    """The AWS CLI (its own parsing, waiters and base64 handling) and boto3's resource
    layer over the same instance calls."""
    image, _ = guest_image
    run = aws(alice, "ec2", "run-instances", "--image-id", image, "--count", "1",
              "--instance-type", "t3.micro", "--tag-specifications",
              "ResourceType=instance,Tags=[{Key=Name,Value=cli}]")
    iid = run["Instances"][0]["InstanceId"]
    aws(alice, "ec2", "wait", "instance-running", "--instance-ids", iid)
    desc = aws(alice, "ec2", "describe-instances", "--filters", "Name=tag:Name,Values=cli",
               "Name=instance-state-name,Values=running")
    assert [i["InstanceId"] for r in desc["Reservations"] for i in r["Instances"]] == [iid]
    attr = aws(alice, "ec2", "describe-instance-attribute", "--instance-id", iid,
               "--attribute", "instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    deadline = time.time() + 60
    out = ""
    while "openami-guest: booted" not in out and time.time() < deadline:
        out = (aws(alice, "ec2", "get-console-output", "--instance-id", iid) or {}).get("Output", "")
        time.sleep(0.5)
    assert "openami-guest: booted" in out

    import boto3
    from botocore.config import Config
    res = boto3.resource("ec2", endpoint_url=server.endpoint, region_name="us-east-1",
                         aws_access_key_id=alice["AccessKeyId"], aws_secret_access_key=alice["SecretAccessKey"],
                         config=Config(retries={"max_attempts": 1}))
    inst = res.Instance(iid)
    assert inst.state["Name"] == "running" and inst.image_id == image
    vols = list(inst.volumes.all())
    assert len(vols) == 1 and vols[0].attachments[0]["Device"] == "/dev/xvda"
    inst.stop()
    inst.wait_until_stopped(WaiterConfig=VM_WAITER)
    inst.reload()
    assert inst.state["Code"] == 80
    aws(alice, "ec2", "terminate-instances", "--instance-ids", iid)
    aws(alice, "ec2", "wait", "instance-terminated", "--instance-ids", iid)


def test_describe_instance_types(ec2, alice, aws):
    client = ec2(alice)
    one = client.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
    assert len(one) == 1
    t = one[0]
    assert t["VCpuInfo"]["DefaultVCpus"] == 2 and t["MemoryInfo"]["SizeInMiB"] == 1024
    assert t["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"] and t["FreeTierEligible"] is True
    with_store = client.describe_instance_types(
        Filters=[{"Name": "instance-storage-supported", "Values": ["true"]}])["InstanceTypes"]
    assert with_store and all(x["InstanceStorageInfo"]["TotalSizeInGB"] > 0 for x in with_store)
    names = [x["InstanceType"] for p in client.get_paginator("describe_instance_types").paginate(
        PaginationConfig={"PageSize": 5}) for x in p["InstanceTypes"]]
    assert len(names) == len(set(names)) > 10 and "m5d.large" in names
    with pytest.raises(ClientError) as e:
        client.describe_instance_types(InstanceTypes=["x9.huge"])
    assert error_code(e.value) == "InvalidInstanceType"
    out = aws(alice, "ec2", "describe-instance-types", "--filters", "Name=vcpu-info.default-vcpus,Values=4")
    assert {x["VCpuInfo"]["DefaultVCpus"] for x in out["InstanceTypes"]} == {4}

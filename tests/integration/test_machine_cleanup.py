"""No leaked machines: a clean stop (SIGTERM) is prompt whatever state the instances are in
and ends their QEMU processes; the QEMU processes of an openami that was SIGKILLed and whose
data directory was then deleted (as a test harness does) are ended by the next openami that
starts on this host, wherever its data directory is.
"""

import shutil
import signal
import subprocess
import time
import uuid

import boto3
from botocore.config import Config

from conftest import Server
from test_instances import guest_raw, needs_qemu, upload  # noqa: F401

pytestmark = needs_qemu


def qemu_of(instance_ids):
    """Pids of QEMU processes running one of these instances (`-name guest=i-…`)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "qemu-system" in args and any(f"guest={i}," in args for i in instance_ids):
            pids.append(int(pid))
    return pids


def client_of(server, creds):
    return boto3.client("ec2", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def start_with_instances(tmp_path, guest_raw, name, count):  # noqa: F811
    (tmp_path / name).mkdir()
    server = Server(tmp_path / name / "data")
    creds = server.create_account("cleanup-" + uuid.uuid4().hex[:6])
    client = client_of(server, creds)
    snap = upload(server, creds, guest_raw)
    client.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    image = client.register_image(
        Name="cleanup-" + uuid.uuid4().hex[:6], Architecture="x86_64", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    ids = [i["InstanceId"] for i in client.run_instances(
        ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.micro")["Instances"]]
    return server, ids, client


def kill_all(server, ids):
    """After a failed assertion: nothing of the test may outlive it."""
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    for pid in qemu_of(ids):
        subprocess.run(["kill", "-9", str(pid)], check=False)


def wait_gone(ids, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline and qemu_of(ids):
        time.sleep(0.2)
    return qemu_of(ids)


def test_sigterm_is_prompt_with_pending_instances(tmp_path, guest_raw):  # noqa: F811
    server, ids, _ = start_with_instances(tmp_path, guest_raw, "term", 4)
    try:
        # At once: the instances are pending, their machines being launched.
        started = time.time()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        took = time.time() - started
        print(f"[timing] SIGTERM with 4 pending instances: {took:.1f} s")
        assert took < 10, f"a clean stop took {took:.1f} s"
        assert wait_gone(ids, 5) == []
    finally:
        kill_all(server, ids)
        server.log.close()


def test_machines_of_a_killed_server_with_a_deleted_data_dir_are_ended(tmp_path, guest_raw):  # noqa: F811
    server, ids, client = start_with_instances(tmp_path, guest_raw, "killed", 2)
    try:
        # Running, not merely spawned: a QEMU still starting when openami dies cannot
        # connect to the NBD sockets of its disks and exits (the next start boots the
        # instance again), so only launched machines are the ones that outlive openami.
        client.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        assert len(qemu_of(ids)) == 2
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        # The machines outlive a crash of openami (by design: the next start adopts them) …
        time.sleep(1)
        assert len(qemu_of(ids)) == 2
        # … but not the deletion of their data directory: the next openami ends them.
        shutil.rmtree(tmp_path / "killed" / "data")
        (tmp_path / "other").mkdir()
        other = Server(tmp_path / "other" / "data")
        try:
            assert wait_gone(ids, 15) == []
        finally:
            assert other.stop() == 0
    finally:
        kill_all(server, ids)
        server.log.close()

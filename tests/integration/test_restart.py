"""Crash and restart of the real server: SIGKILL while work is in flight, restart on the
same data directory, and check that nothing is lost or left half-done."""

import signal
import subprocess

import pytest

from conftest import FAST_WAITER, Server, openami_bin


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def restart(srv):
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv.log.close()
    return Server(srv.data_dir)


def test_sigkill_during_snapshots_then_restart(own_server):
    srv = own_server
    creds = srv.create_account("crashy")
    import boto3
    from botocore.config import Config

    def client(s):
        return boto3.client("ec2", endpoint_url=s.endpoint, region_name="us-east-1",
                            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 1}))

    c = client(srv)
    vols = [c.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"] for _ in range(3)]
    done = c.create_snapshot(VolumeId=vols[0])["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[done], WaiterConfig=FAST_WAITER)
    inflight = [c.create_snapshot(VolumeId=v)["SnapshotId"] for v in vols[1:]]
    copy = c.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=done)["SnapshotId"]

    srv2 = restart(srv)
    c = client(srv2)
    try:
        snaps = {s["SnapshotId"]: s for s in c.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        assert snaps[done]["State"] == "completed", "a completed snapshot survives a crash"
        for sid in inflight + [copy]:
            assert snaps[sid]["State"] in ("completed", "error"), f"{sid} must not stay pending"
        assert {v["VolumeId"] for v in c.describe_volumes()["Volumes"]} == set(vols)
        # The store agrees with the catalog.
        scrub = subprocess.run([openami_bin(), "store", "scrub", "--data-dir", str(srv2.data_dir)],
                               capture_output=True, text=True)
        assert scrub.returncode == 0, scrub.stdout + scrub.stderr
        # And the service works on: a new snapshot of a volume whose snapshot was interrupted.
        again = c.create_snapshot(VolumeId=vols[1])["SnapshotId"]
        c.get_waiter("snapshot_completed").wait(SnapshotIds=[again], WaiterConfig=FAST_WAITER)
        v = c.create_volume(AvailabilityZone="us-east-1b", SnapshotId=done)
        assert v["State"] == "available"
    finally:
        assert srv2.stop() == 0

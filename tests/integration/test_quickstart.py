"""`openami quickstart`: publishes a disk as a Quick Start image (owner alias `amazon`) on a
running server — the snapshot uploaded with the EBS direct client and shared with everyone,
the image public and named `debian-12-amd64-YYYYMMDD-N` — idempotently.

These tests publish small raw files with `--image`; building and booting the real Debian
image (`scripts/build-debian-image`) is too slow for this tier."""

import datetime
import json
import os
import re
import secrets
import subprocess

import pytest

from conftest import FAST_WAITER, free_port, openami_bin

AMAZON = "137112412989"
NAME_FILTER = [{"Name": "name", "Values": ["debian-12-amd64-*"]}]


def make_disk(path, mib=4):
    """A sparse raw disk with random data in three places, unique per call."""
    with open(path, "wb") as f:
        f.truncate(mib << 20)
        for offset in (0, 1 << 20, (mib << 20) - 4096):
            f.seek(offset)
            f.write(secrets.token_bytes(4096))
    return path


def quickstart(server, *flags, data_dir=None):
    out = subprocess.run(
        [openami_bin(), "quickstart", "--data-dir", str(data_dir or server.data_dir),
         "--no-progress", *flags],
        capture_output=True, text=True, env={**os.environ, "OPENAMI_ENDPOINT_URL": server.endpoint},
        timeout=300,
    )
    summary = json.loads(out.stdout) if out.returncode == 0 else None
    return out.returncode, summary, out.stderr


@pytest.fixture(scope="module")
def published(server, tmp_path_factory):
    disk = make_disk(tmp_path_factory.mktemp("quickstart") / "disk.raw")
    status, summary, stderr = quickstart(server, "--image", str(disk))
    assert status == 0, stderr
    [image] = summary["Images"]
    assert image["Region"] == "us-east-1" and image["New"] is True
    return {"disk": disk, "image": image}


def test_image_is_a_public_quick_start_image_for_other_accounts(published, alice, bob, ec2, aws):
    image_id = published["image"]["ImageId"]
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    assert re.fullmatch(rf"debian-12-amd64-{day}-\d+", published["image"]["Name"])
    # The AWS CLI, as the README shows it, from bob's account.
    found = aws(bob, "ec2", "describe-images", "--owners", "amazon",
                "--filters", "Name=name,Values=debian-12-amd64-*")["Images"]
    [image] = [i for i in found if i["ImageId"] == image_id]
    assert image["Name"] == published["image"]["Name"]
    assert image["OwnerId"] == AMAZON and image["ImageOwnerAlias"] == "amazon"
    assert image["Public"] is True and image["State"] == "available"
    assert image["Description"] == "Debian 12 (bookworm) amd64 cloud image built by openami"
    for key, value in (("Architecture", "x86_64"), ("RootDeviceName", "/dev/xvda"),
                       ("RootDeviceType", "ebs"), ("VirtualizationType", "hvm"),
                       ("EnaSupport", True), ("BootMode", "legacy-bios"),
                       ("ImageType", "machine")):
        assert image[key] == value, key
    assert "ImdsSupport" not in image
    [mapping] = image["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/xvda"
    ebs = mapping["Ebs"]
    assert (ebs["VolumeSize"], ebs["VolumeType"], ebs["DeleteOnTermination"]) == (8, "gp3", True)
    assert ebs["SnapshotId"] == published["image"]["SnapshotId"]
    # boto3 from alice's account sees the same, launchable by all.
    c = ec2(alice)
    assert image_id in {i["ImageId"] for i in c.describe_images(
        Owners=["amazon"], Filters=NAME_FILTER)["Images"]}
    assert image_id in {i["ImageId"] for i in c.describe_images(
        ExecutableUsers=["all"], Filters=NAME_FILTER)["Images"]}
    # Not theirs, and the operator's tags are not shown to them.
    assert image_id not in {i["ImageId"] for i in c.describe_images(Owners=["self"])["Images"]}
    assert "Tags" not in c.describe_images(ImageIds=[image_id])["Images"][0]


def test_snapshot_is_public_and_usable_by_another_account(published, bob, ec2):
    snap = published["image"]["SnapshotId"]
    c = ec2(bob)
    [s] = c.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
    assert s["OwnerId"] == AMAZON and s["State"] == "completed" and s["VolumeSize"] == 8
    assert snap in {x["SnapshotId"] for x in c.describe_snapshots(
        RestorableByUserIds=["all"], OwnerIds=[AMAZON])["Snapshots"]}
    vol = c.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snap)
    try:
        c.get_waiter("volume_available").wait(VolumeIds=[vol["VolumeId"]], WaiterConfig=FAST_WAITER)
        [v] = c.describe_volumes(VolumeIds=[vol["VolumeId"]])["Volumes"]
        assert v["SnapshotId"] == snap and v["Size"] == 8
    finally:
        c.delete_volume(VolumeId=vol["VolumeId"])


def test_rerun_with_the_same_disk_publishes_nothing(server, published, alice, ec2):
    c = ec2(alice)
    before = c.describe_images(Owners=["amazon"], Filters=NAME_FILTER)["Images"]
    snaps_before = c.describe_snapshots(OwnerIds=[AMAZON])["Snapshots"]
    status, summary, stderr = quickstart(server, "--image", str(published["disk"]))
    assert status == 0, stderr
    [image] = summary["Images"]
    assert image["New"] is False
    assert (image["ImageId"], image["Name"], image["SnapshotId"]) == (
        published["image"]["ImageId"], published["image"]["Name"], published["image"]["SnapshotId"])
    assert "already published" in stderr
    after = c.describe_images(Owners=["amazon"], Filters=NAME_FILTER)["Images"]
    assert sorted(i["ImageId"] for i in after) == sorted(i["ImageId"] for i in before)
    assert len(c.describe_snapshots(OwnerIds=[AMAZON])["Snapshots"]) == len(snaps_before)


def test_another_disk_the_same_day_gets_the_next_number(server, published, tmp_path, alice, ec2):
    status, summary, stderr = quickstart(server, "--image", str(make_disk(tmp_path / "b.raw")))
    assert status == 0, stderr
    [image] = summary["Images"]
    assert image["New"] is True and image["ImageId"] != published["image"]["ImageId"]
    c = ec2(alice)
    names = {i["Name"] for i in c.describe_images(Owners=["amazon"], Filters=NAME_FILTER)["Images"]}
    prefix, n = published["image"]["Name"].rsplit("-", 1)
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    if prefix.endswith(day):  # (unless the day changed between the two runs)
        highest = max(int(x.rsplit("-", 1)[1]) for x in names
                      if x.startswith(prefix + "-") and x != image["Name"])
        assert image["Name"] == f"{prefix}-{highest + 1}"
    assert image["Name"] in names


def test_refuses_without_a_running_server(server, tmp_path, published):
    # A data directory no server runs on.
    idle = tmp_path / "idle"
    subprocess.run([openami_bin(), "account", "create", "x", "--data-dir", str(idle)],
                   check=True, capture_output=True)
    status, _, stderr = quickstart(server, "--image", str(published["disk"]), data_dir=idle)
    assert status != 0
    assert "no `openami serve` is running" in stderr
    # The server's data directory, but an endpoint where nothing listens.
    disk = make_disk(tmp_path / "c.raw")
    status, _, stderr = quickstart(server, "--image", str(disk),
                                   "--endpoint", f"http://127.0.0.1:{free_port()}")
    assert status != 0
    assert "no openami server answers" in stderr

"""Images (AMIs) through boto3 and the AWS CLI: RegisterImage from snapshots, DescribeImages
semantics (owners, executable-by, filters, deprecated/disabled hiding, pagination), sharing
with launchPermission and block public access, attributes, deregistration (protection,
associated snapshots), CopyImage across regions, and the error paths."""

import time
import uuid
from datetime import datetime, timedelta, timezone

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code


def unique(prefix="img"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_snapshot(c, size=1, zone=None):
    zone = zone or c.meta.region_name + "a"
    vid = c.create_volume(AvailabilityZone=zone, Size=size)["VolumeId"]
    sid = c.create_snapshot(VolumeId=vid)["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    return sid


def root_mapping(sid, device="/dev/xvda", **ebs):
    return {"DeviceName": device, "Ebs": {"SnapshotId": sid, **ebs}}


def register(c, sid=None, name=None, **kw):
    sid = sid or make_snapshot(c)
    kw.setdefault("RootDeviceName", "/dev/xvda")
    kw.setdefault("BlockDeviceMappings", [root_mapping(sid)])
    return c.register_image(Name=name or unique(), **kw)["ImageId"]


def describe_one(c, image_id, **kw):
    images = c.describe_images(ImageIds=[image_id], **kw)["Images"]
    assert len(images) == 1
    return images[0]


def ids_of(response):
    return {i["ImageId"] for i in response["Images"]}


def expect_error(code, call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e.value) == code, e.value.response["Error"]
    return e.value


@pytest.fixture(scope="module")
def carol(server):
    return server.create_account("carol-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def dave(server):
    return server.create_account("dave-" + uuid.uuid4().hex[:8])


def test_register_and_describe(alice, ec2):
    c = ec2(alice)
    sid = make_snapshot(c, size=2)
    name = unique("web (v1.0)")
    image_id = c.register_image(
        Name=name, Description="a test image", Architecture="arm64", BootMode="uefi",
        TpmSupport="v2.0", ImdsSupport="v2.0", EnaSupport=True, SriovNetSupport="simple",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[
            root_mapping(sid, VolumeSize=4, VolumeType="gp3"),
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sdc", "NoDevice": ""},
            {"DeviceName": "/dev/sdd", "Ebs": {"VolumeSize": 10, "DeleteOnTermination": False}},
        ],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "team", "Value": "web"}]}],
    )["ImageId"]
    assert image_id.startswith("ami-") and len(image_id) == 21
    c.get_waiter("image_exists").wait(ImageIds=[image_id], WaiterConfig=FAST_WAITER)
    c.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig=FAST_WAITER)
    img = describe_one(c, image_id)
    assert img["State"] == "available" and img["Name"] == name
    assert img["OwnerId"] == alice["AccountId"] and img["Public"] is False
    assert img["ImageLocation"] == f"{alice['AccountId']}/{name}"
    assert img["Description"] == "a test image"
    assert (img["Architecture"], img["BootMode"], img["TpmSupport"]) == ("arm64", "uefi", "v2.0")
    assert (img["ImdsSupport"], img["EnaSupport"], img["SriovNetSupport"]) == ("v2.0", True, "simple")
    assert (img["RootDeviceType"], img["RootDeviceName"]) == ("ebs", "/dev/xvda")
    assert (img["ImageType"], img["VirtualizationType"], img["Hypervisor"]) == ("machine", "hvm", "xen")
    assert img["PlatformDetails"] == "Linux/UNIX" and img["UsageOperation"] == "RunInstances"
    assert img["DeregistrationProtection"] == "disabled"
    assert img["Tags"] == [{"Key": "team", "Value": "web"}]
    created = datetime.strptime(img["CreationDate"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 120
    bdm = {m["DeviceName"]: m for m in img["BlockDeviceMappings"]}
    assert bdm["/dev/xvda"]["Ebs"] == {
        "SnapshotId": sid, "VolumeSize": 4, "DeleteOnTermination": True, "VolumeType": "gp3",
        "Iops": 3000, "Throughput": 125, "Encrypted": False}
    assert bdm["/dev/sdb"]["VirtualName"] == "ephemeral0"
    assert bdm["/dev/sdc"]["NoDevice"] == ""
    assert bdm["/dev/sdd"]["Ebs"]["DeleteOnTermination"] is False
    assert "SnapshotId" not in bdm["/dev/sdd"]["Ebs"]
    # Defaults: x86_64, hvm, gp2, DeleteOnTermination true, no boot mode.
    plain = describe_one(c, register(c))
    assert (plain["Architecture"], plain["VirtualizationType"]) == ("x86_64", "hvm")
    assert "BootMode" not in plain and "Description" not in plain
    ebs = plain["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["VolumeType"], ebs["DeleteOnTermination"], ebs["VolumeSize"]) == ("gp2", True, 1)


def test_filters_with_wildcards(alice, ec2):
    c = ec2(alice)
    prefix = unique("filt")
    sid = make_snapshot(c, size=3)
    arm = register(c, sid, name=f"{prefix}-arm", Architecture="arm64",
                   TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "os", "Value": "debian-12"}]}])
    x86 = register(c, make_snapshot(c), name=f"{prefix}-x86", Description=f"{prefix} desc",
                   TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "os", "Value": "ubuntu-24"}]}])

    def find(*filters, **kw):
        return ids_of(c.describe_images(Filters=[{"Name": n, "Values": v} for n, v in filters], **kw))

    assert find(("name", [f"{prefix}-*"])) == {arm, x86}
    assert find(("name", [f"{prefix}-a?m"])) == {arm}
    assert find(("name", [f"{prefix}-arm", f"{prefix}-x86"])) == {arm, x86}
    assert find(("name", [f"{prefix}-*"]), ("architecture", ["arm64"])) == {arm}
    assert find(("block-device-mapping.snapshot-id", [sid])) == {arm}
    assert find(("name", [f"{prefix}-*"]), ("block-device-mapping.volume-size", ["3"])) == {arm}
    assert find(("name", [f"{prefix}-*"]), ("block-device-mapping.device-name", ["/dev/xv*"])) == {arm, x86}
    assert find(("name", [f"{prefix}-*"]), ("block-device-mapping.volume-type", ["gp2"])) == {arm, x86}
    assert find(("name", [f"{prefix}-*"]), ("block-device-mapping.delete-on-termination", ["true"])) == {arm, x86}
    assert find(("tag:os", ["debian-*"])) == {arm}
    assert find(("name", [f"{prefix}-*"]), ("tag-key", ["os"])) == {arm, x86}
    assert find(("tag-value", ["ubuntu-2?"])) == {x86}
    assert find(("description", [f"{prefix} *"])) == {x86}
    assert find(("image-id", [arm])) == {arm}
    assert find(("name", [f"{prefix}-*"]), ("is-public", ["false"]), ("state", ["available"]),
                ("root-device-type", ["ebs"]), ("image-type", ["machine"]), ("owner-id", [alice["AccountId"]]),
                ("virtualization-type", ["hvm"]), ("hypervisor", ["xen"]), ("platform-details", ["Linux/UNIX"]),
                ("root-device-name", ["/dev/xvda"])) == {arm, x86}
    assert find(("name", [f"{prefix}-*"]), ("is-public", ["true"])) == set()
    assert find(("name", [f"{prefix}-*"]), ("kernel-id", ["*"])) == set()
    assert find(("name", [f"{prefix}-*"]), ("platform", ["windows"])) == set()
    assert find(("name", [f"{prefix}-*"]), ("owner-alias", ["amazon"])) == set()
    assert find(("name", [f"{prefix}-*"]), ("creation-date", ["20*"])) == {arm, x86}
    assert find(("image-id", [arm, x86]), ("name", ["nothing-*"])) == set()
    expect_error("InvalidParameterValue", c.describe_images, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])


def test_owners_executable_by_and_sharing(alice, bob, carol, ec2):
    a, b, cc = ec2(alice), ec2(bob), ec2(carol)
    image_id = register(a, TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "secret", "Value": "x"}]}])
    assert image_id in ids_of(a.describe_images())
    assert image_id in ids_of(a.describe_images(Owners=["self"]))
    assert image_id in ids_of(a.describe_images(Owners=[alice["AccountId"]]))
    assert image_id in ids_of(a.describe_images(ExecutableUsers=["self"]))
    assert image_id not in ids_of(a.describe_images(Owners=[bob["AccountId"]]))
    assert image_id not in ids_of(a.describe_images(Owners=["amazon", "aws-marketplace"]))
    assert image_id not in ids_of(a.describe_images(ExecutableUsers=[bob["AccountId"]]))
    assert image_id not in ids_of(a.describe_images(ExecutableUsers=["all"]))
    # Private: bob sees nothing of it, through any door.
    for call in (lambda: b.describe_images(), lambda: b.describe_images(Owners=[alice["AccountId"]]),
                 lambda: b.describe_images(ExecutableUsers=["all"]),
                 lambda: b.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}]),
                 lambda: b.describe_images(Filters=[{"Name": "owner-id", "Values": [alice["AccountId"]]}])):
        assert image_id not in ids_of(call())
    expect_error("InvalidAMIID.NotFound", b.describe_images, ImageIds=[image_id])
    expect_error("InvalidAMIID.NotFound", b.describe_image_attribute, ImageId=image_id, Attribute="description")
    expect_error("InvalidAMIID.NotFound", b.deregister_image, ImageId=image_id)

    # Share with bob.
    a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
    perms = a.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    assert perms == [{"UserId": bob["AccountId"]}]
    shared = describe_one(b, image_id)
    assert shared["OwnerId"] == alice["AccountId"] and "Tags" not in shared and shared["Public"] is False
    assert image_id in ids_of(b.describe_images())
    assert image_id in ids_of(b.describe_images(Owners=[alice["AccountId"]]))
    assert image_id in ids_of(b.describe_images(ExecutableUsers=["self"]))
    assert image_id not in ids_of(b.describe_images(Owners=["self"]))
    assert image_id in ids_of(a.describe_images(ExecutableUsers=[bob["AccountId"]]))
    assert image_id not in ids_of(cc.describe_images())
    # A grantee can read attributes but not launch permissions, and cannot change anything.
    assert b.describe_image_attribute(ImageId=image_id, Attribute="description")["ImageId"] == image_id
    expect_error("AuthFailure", b.describe_image_attribute, ImageId=image_id, Attribute="launchPermission")
    expect_error("AuthFailure", b.modify_image_attribute, ImageId=image_id, Description={"Value": "mine"})
    expect_error("AuthFailure", b.deregister_image, ImageId=image_id)
    expect_error("InvalidAMIID.NotFound", b.create_tags, Resources=[image_id], Tags=[{"Key": "k", "Value": "v"}])

    # Public: everyone sees it.
    a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    assert describe_one(cc, image_id)["Public"] is True
    assert image_id in ids_of(cc.describe_images(ExecutableUsers=["all"]))
    assert image_id in ids_of(cc.describe_images(Filters=[{"Name": "is-public", "Values": ["true"]}]))
    perms = a.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    assert sorted(perms, key=str) == sorted([{"UserId": bob["AccountId"]}, {"Group": "all"}], key=str)
    # The older OperationType form removes them.
    a.modify_image_attribute(ImageId=image_id, Attribute="launchPermission", OperationType="remove",
                             UserGroups=["all"])
    assert image_id not in ids_of(cc.describe_images())
    assert image_id in ids_of(b.describe_images())
    a.reset_image_attribute(ImageId=image_id, Attribute="launchPermission")
    assert a.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"] == []
    assert image_id not in ids_of(b.describe_images())


def test_cancel_launch_permission(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    image_id = register(a)
    expect_error("InvalidAMIID.NotFound", b.cancel_image_launch_permission, ImageId=image_id)
    a.modify_image_attribute(ImageId=image_id, Attribute="launchPermission", OperationType="add",
                             UserIds=[bob["AccountId"]])
    assert image_id in ids_of(b.describe_images(ExecutableUsers=["self"]))
    assert b.cancel_image_launch_permission(ImageId=image_id)["Return"] is True
    assert image_id not in ids_of(b.describe_images())
    assert a.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"] == []
    expect_error("InvalidParameterValue", a.cancel_image_launch_permission, ImageId=image_id)


def test_block_public_access(alice, bob, ec2):
    a = ec2(alice, region="eu-west-1")
    image_id = register(a)
    state = a.get_image_block_public_access_state()
    assert state["ImageBlockPublicAccessState"] == "unblocked" and state["ManagedBy"] == "account"
    try:
        r = a.enable_image_block_public_access(ImageBlockPublicAccessState="block-new-sharing")
        assert r["ImageBlockPublicAccessState"] == "block-new-sharing"
        assert a.get_image_block_public_access_state()["ImageBlockPublicAccessState"] == "block-new-sharing"
        # Other regions are not affected.
        assert ec2(alice).get_image_block_public_access_state()["ImageBlockPublicAccessState"] == "unblocked"
        err = expect_error("OperationNotPermitted", a.modify_image_attribute, ImageId=image_id,
                           LaunchPermission={"Add": [{"Group": "all"}]})
        assert "DisableImageBlockPublicAccess" in err.response["Error"]["Message"]
        expect_error("OperationNotPermitted", a.modify_image_attribute, ImageId=image_id,
                     OperationType="add", UserGroups=["all"])
        # Sharing with an account is still fine.
        a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
        assert describe_one(a, image_id)["Public"] is False
        expect_error("InvalidParameterValue", a.enable_image_block_public_access,
                     ImageBlockPublicAccessState="block-all-sharing")
    finally:
        r = a.disable_image_block_public_access()
    assert r["ImageBlockPublicAccessState"] == "unblocked"
    a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    assert describe_one(a, image_id)["Public"] is True


def test_deregister_and_snapshots_in_use(alice, ec2):
    c = ec2(alice)
    sid = make_snapshot(c)
    image_id = register(c, sid)
    expect_error("InvalidSnapshot.InUse", c.delete_snapshot, SnapshotId=sid)
    # Volumes can still be made from it.
    assert c.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)["SnapshotId"] == sid
    r = c.deregister_image(ImageId=image_id)
    assert r["Return"] is True and "DeleteSnapshotResults" not in r
    expect_error("InvalidAMIID.NotFound", c.describe_images, ImageIds=[image_id])
    expect_error("InvalidAMIID.NotFound", c.deregister_image, ImageId=image_id)
    c.delete_snapshot(SnapshotId=sid)

    # DeleteAssociatedSnapshots: the image's own snapshots go; one still used elsewhere stays.
    shared_sid, own_sid = make_snapshot(c), make_snapshot(c)
    image_id = register(c, own_sid, BlockDeviceMappings=[
        root_mapping(own_sid), {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": shared_sid}}])
    other = register(c, shared_sid)
    r = c.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    results = {d["SnapshotId"]: d["ReturnCode"] for d in r["DeleteSnapshotResults"]}
    assert results == {own_sid: "success", shared_sid: "skipped"}
    expect_error("InvalidSnapshot.NotFound", c.describe_snapshots, SnapshotIds=[own_sid])
    assert c.describe_snapshots(SnapshotIds=[shared_sid])["Snapshots"][0]["State"] == "completed"
    c.deregister_image(ImageId=other, DeleteAssociatedSnapshots=True)
    expect_error("InvalidSnapshot.NotFound", c.describe_snapshots, SnapshotIds=[shared_sid])


def test_deregister_other_accounts_snapshots(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    sid = make_snapshot(a)
    a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                OperationType="add", UserIds=[bob["AccountId"]])
    # Bob may register an image from alice's shared snapshot ...
    image_id = register(b, sid)
    # ... after which alice cannot delete it, and is not told bob's image id.
    err = expect_error("InvalidSnapshot.InUse", a.delete_snapshot, SnapshotId=sid)
    assert image_id not in err.response["Error"]["Message"]
    r = b.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert r["DeleteSnapshotResults"] == [{"SnapshotId": sid, "ReturnCode": "missing-permissions"}]
    a.delete_snapshot(SnapshotId=sid)


def test_deregistration_protection(alice, ec2):
    c = ec2(alice)
    image_id = register(c)
    assert c.enable_image_deregistration_protection(ImageId=image_id)["Return"] == "true"
    assert describe_one(c, image_id)["DeregistrationProtection"] == "enabled-without-cooldown"
    attr = c.describe_image_attribute(ImageId=image_id, Attribute="deregistrationProtection")
    assert attr["DeregistrationProtection"] == {"Value": "enabled-without-cooldown"}
    expect_error("OperationNotPermitted", c.deregister_image, ImageId=image_id)
    c.disable_image_deregistration_protection(ImageId=image_id)
    assert describe_one(c, image_id)["DeregistrationProtection"] == "disabled"
    c.deregister_image(ImageId=image_id)

    cooled = register(c)
    c.enable_image_deregistration_protection(ImageId=cooled, WithCooldown=True)
    assert describe_one(c, cooled)["DeregistrationProtection"] == "enabled-with-cooldown"
    c.disable_image_deregistration_protection(ImageId=cooled)
    assert describe_one(c, cooled)["DeregistrationProtection"].startswith("disabled-until-")
    expect_error("OperationNotPermitted", c.deregister_image, ImageId=cooled)


def test_deprecation_hides_images_from_others(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    image_id = register(a)
    a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
    expect_error("InvalidParameterValue", a.enable_image_deprecation, ImageId=image_id,
                 DeprecateAt=datetime.now(timezone.utc) - timedelta(hours=1))
    expect_error("AuthFailure", b.enable_image_deprecation, ImageId=image_id,
                 DeprecateAt=datetime.now(timezone.utc) + timedelta(days=1))
    at = datetime.now(timezone.utc) + timedelta(seconds=2)
    assert a.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)["Return"] is True
    shown = describe_one(a, image_id)["DeprecationTime"]
    assert shown.startswith(at.strftime("%Y-%m-%dT%H:%M:%S"))
    # Not yet deprecated: bob still lists it.
    assert image_id in ids_of(b.describe_images(ExecutableUsers=["self"]))
    time.sleep(max(0.0, (at - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    assert image_id not in ids_of(b.describe_images())
    assert image_id not in ids_of(b.describe_images(ExecutableUsers=["self"]))
    assert image_id in ids_of(b.describe_images(IncludeDeprecated=True))
    assert describe_one(b, image_id)["ImageId"] == image_id
    assert image_id in ids_of(b.describe_images(Filters=[{"Name": "deprecation-time", "Values": ["20*"]}],
                                                IncludeDeprecated=True))
    # The owner always sees its deprecated images.
    assert image_id in ids_of(a.describe_images(Owners=["self"]))
    a.disable_image_deprecation(ImageId=image_id)
    assert "DeprecationTime" not in describe_one(a, image_id)
    assert image_id in ids_of(b.describe_images())


def test_disable_and_enable_image(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    image_id = register(a)
    a.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
    assert a.disable_image(ImageId=image_id)["Return"] is True
    assert describe_one(a, image_id)["State"] == "disabled"
    assert image_id not in ids_of(a.describe_images(Owners=["self"]))
    assert image_id in ids_of(a.describe_images(Owners=["self"], IncludeDisabled=True))
    assert image_id not in ids_of(b.describe_images(IncludeDisabled=True))
    expect_error("InvalidAMIID.NotFound", b.describe_images, ImageIds=[image_id])
    # Launch permissions are kept and apply again once enabled.
    assert a.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    assert a.enable_image(ImageId=image_id)["Return"] is True
    assert describe_one(b, image_id)["State"] == "available"


def test_image_attributes(alice, bob, ec2):
    c = ec2(alice)
    image_id = register(c, Description="before", BootMode="legacy-bios")
    attr = lambda name: c.describe_image_attribute(ImageId=image_id, Attribute=name)  # noqa: E731
    assert attr("description")["Description"] == {"Value": "before"}
    assert attr("bootMode")["BootMode"] == {"Value": "legacy-bios"}
    assert attr("kernel")["KernelId"] == {}
    assert attr("ramdisk")["RamdiskId"] == {}
    assert attr("sriovNetSupport")["SriovNetSupport"] == {}
    assert attr("lastLaunchedTime")["LastLaunchedTime"] == {}
    assert attr("productCodes")["ProductCodes"] == []
    assert attr("blockDeviceMapping")["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    c.modify_image_attribute(ImageId=image_id, Description={"Value": "after"})
    assert attr("description")["Description"] == {"Value": "after"}
    c.modify_image_attribute(ImageId=image_id, Attribute="description", Value="again")
    assert describe_one(c, image_id)["Description"] == "again"
    c.modify_image_attribute(ImageId=image_id, ImdsSupport={"Value": "v2.0"})
    assert attr("imdsSupport")["ImdsSupport"] == {"Value": "v2.0"}
    expect_error("InvalidParameterValue", c.describe_image_attribute, ImageId=image_id, Attribute="colour")
    expect_error("InvalidParameterCombination", c.modify_image_attribute, ImageId=image_id)
    expect_error("InvalidParameterValue", c.modify_image_attribute, ImageId=image_id, ImdsSupport={"Value": "v1.0"})
    expect_error("InvalidAMIAttributeItemValue", c.modify_image_attribute, ImageId=image_id,
                 LaunchPermission={"Add": [{"UserId": "not-an-account"}]})
    expect_error("InvalidParameterValue", c.reset_image_attribute, ImageId=image_id, Attribute="description")
    # Tags on images through the tag API.
    c.create_tags(Resources=[image_id], Tags=[{"Key": "stage", "Value": "prod"}])
    tags = c.describe_tags(Filters=[{"Name": "resource-id", "Values": [image_id]}])["Tags"]
    assert tags == [{"ResourceId": image_id, "ResourceType": "image", "Key": "stage", "Value": "prod"}]
    assert image_id in ids_of(c.describe_images(Filters=[{"Name": "tag:stage", "Values": ["prod"]}]))
    c.delete_tags(Resources=[image_id], Tags=[{"Key": "stage"}])
    assert "Tags" not in describe_one(c, image_id)


def test_instance_store_image(alice, ec2):
    c = ec2(alice)
    template = make_snapshot(c)
    image_id = c.register_image(Name=unique("store"), ImageLocation=template,
                                BlockDeviceMappings=[{"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}]
                                )["ImageId"]
    img = describe_one(c, image_id)
    assert (img["RootDeviceType"], img["RootDeviceName"], img["ImageLocation"]) == (
        "instance-store", "/dev/sda1", template)
    assert image_id in ids_of(c.describe_images(Filters=[{"Name": "root-device-type", "Values": ["instance-store"]}]))
    expect_error("InvalidSnapshot.InUse", c.delete_snapshot, SnapshotId=template)
    expect_error("InvalidParameterValue", c.register_image, Name=unique(),
                 ImageLocation="my-bucket/image.manifest.xml")
    expect_error("InvalidBlockDeviceMapping", c.register_image, Name=unique(), ImageLocation=template,
                 BlockDeviceMappings=[root_mapping(template, device="/dev/sda1")])
    r = c.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert r["DeleteSnapshotResults"] == [{"SnapshotId": template, "ReturnCode": "success"}]


def test_register_errors(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    sid = make_snapshot(a, size=2)
    name = unique()
    register(a, sid, name=name)
    cases = [
        ("InvalidAMIName.Duplicate", dict(Name=name)),
        ("InvalidAMIName.Malformed", dict(Name="bad#name")),
        ("InvalidAMIName.Malformed", dict(Name="caf\u00e9 image")),
        ("MissingParameter", dict(RootDeviceName=None)),
        ("MissingParameter", dict(BlockDeviceMappings=[])),
        ("InvalidBlockDeviceMapping", dict(RootDeviceName="/dev/sda1")),
        ("InvalidBlockDeviceMapping", dict(BlockDeviceMappings=[root_mapping(sid, VolumeSize=1)])),
        ("InvalidBlockDeviceMapping", dict(BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "VirtualName": "ephemeral0"}])),
        ("InvalidBlockDeviceMapping", dict(BlockDeviceMappings=[root_mapping(sid), {"DeviceName": "/dev/sdb", "VirtualName": "swap"}])),
        ("InvalidBlockDeviceMapping", dict(BlockDeviceMappings=[root_mapping(sid), root_mapping(sid)])),
        ("InvalidBlockDeviceMapping", dict(BlockDeviceMappings=[root_mapping(sid, device="/dev/../x")], RootDeviceName="/dev/../x")),
        ("InvalidParameterValue", dict(BlockDeviceMappings=[root_mapping(sid, VolumeType="gp9")])),
        ("InvalidSnapshot.NotFound", dict(BlockDeviceMappings=[root_mapping("snap-0123456789abcdef0")])),
        ("InvalidSnapshotID.Malformed", dict(BlockDeviceMappings=[root_mapping("snap-nope")])),
        ("InvalidParameterValue", dict(Architecture="sparc")),
        ("InvalidParameterValue", dict(VirtualizationType="full")),
        ("InvalidParameterValue", dict(BootMode="coreboot")),
        ("InvalidParameterCombination", dict(TpmSupport="v2.0", BootMode="legacy-bios")),
        ("InvalidParameterCombination", dict(TpmSupport="v2.0")),
        ("InvalidKernelId.Malformed", dict(KernelId="ami-0123456789abcdef0")),
        ("InvalidAMIID.NotFound", dict(KernelId="aki-0123456789abcdef0")),
        ("InvalidRamDiskId.Malformed", dict(RamdiskId="aki-0123456789abcdef0")),
        ("InvalidParameterValue", dict(TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}])),
    ]
    for code, overrides in cases:
        kw = {"Name": unique(), "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [root_mapping(sid)]}
        kw.update(overrides)
        kw = {k: v for k, v in kw.items() if v is not None}
        expect_error(code, a.register_image, **kw)
    # Bob cannot use alice's private snapshot, but can once it is shared.
    expect_error("InvalidSnapshot.NotFound", register, b, sid)
    a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                OperationType="add", UserIds=[bob["AccountId"]])
    bobs = register(b, sid, name=name)  # names are per account
    assert describe_one(b, bobs)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == sid
    expect_error("DryRunOperation", a.register_image, Name=unique(), RootDeviceName="/dev/xvda",
                 BlockDeviceMappings=[root_mapping(sid)], DryRun=True)


def test_describe_errors(alice, bob, ec2):
    a, b = ec2(alice), ec2(bob)
    mine = register(a)
    expect_error("InvalidAMIID.Malformed", a.describe_images, ImageIds=["ami-xyz"])
    expect_error("InvalidAMIID.Malformed", a.describe_images, ImageIds=["vol-0123456789abcdef0"])
    expect_error("InvalidAMIID.NotFound", a.describe_images, ImageIds=["ami-0123456789abcdef0"])
    # One invisible id fails the whole call.
    expect_error("InvalidAMIID.NotFound", b.describe_images, ImageIds=[mine, register(b)])
    expect_error("InvalidParameterValue", a.describe_images, Owners=["nobody"])
    expect_error("InvalidParameterValue", a.describe_images, ExecutableUsers=["everyone"])
    expect_error("InvalidParameterCombination", a.describe_images, ImageIds=[mine], MaxResults=5)
    expect_error("InvalidParameterValue", a.describe_images, MaxResults=4)
    expect_error("InvalidAMIID.Malformed", a.deregister_image, ImageId="ami-12")


def test_pagination(dave, ec2):
    c = ec2(dave)
    sid = make_snapshot(c)
    made = {register(c, sid) for _ in range(7)}
    first = c.describe_images(Owners=["self"], MaxResults=5)
    assert len(first["Images"]) == 5 and first["NextToken"]
    second = c.describe_images(Owners=["self"], MaxResults=5, NextToken=first["NextToken"])
    assert len(second["Images"]) == 2 and "NextToken" not in second
    assert ids_of(first) | ids_of(second) == made
    # Above the maximum, AWS clamps.
    assert ids_of(c.describe_images(Owners=["self"], MaxResults=5000)) == made
    pages = list(c.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 5}))
    assert [len(p["Images"]) for p in pages] == [5, 2]
    assert {i["ImageId"] for p in pages for i in p["Images"]} == made
    expect_error("InvalidNextToken", c.describe_images, MaxResults=5, NextToken="")


def test_copy_image_across_regions(alice, bob, ec2):
    east, west = ec2(alice), ec2(alice, region="us-west-2")
    sid = make_snapshot(east, size=2)
    source = register(east, sid, Description="source image", Architecture="arm64", BootMode="uefi",
                      BlockDeviceMappings=[root_mapping(sid, VolumeSize=3),
                                           {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}],
                      TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "app", "Value": "web"}]}])
    name = unique("copy")
    copy_id = west.copy_image(
        SourceRegion="us-east-1", SourceImageId=source, Name=name, CopyImageTags=True,
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "copied", "Value": "yes"}]},
                           {"ResourceType": "snapshot", "Tags": [{"Key": "of", "Value": source}]}],
    )["ImageId"]
    assert copy_id != source
    west.get_waiter("image_available").wait(ImageIds=[copy_id], WaiterConfig=FAST_WAITER)
    img = describe_one(west, copy_id)
    assert img["State"] == "available" and img["Name"] == name
    assert (img["SourceImageId"], img["SourceImageRegion"]) == (source, "us-east-1")
    assert (img["Description"], img["Architecture"], img["BootMode"]) == ("source image", "arm64", "uefi")
    assert sorted(img["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "app", "Value": "web"}, {"Key": "copied", "Value": "yes"}]
    bdm = {m["DeviceName"]: m for m in img["BlockDeviceMappings"]}
    assert bdm["/dev/sdb"]["VirtualName"] == "ephemeral0"
    new_sid = bdm["/dev/xvda"]["Ebs"]["SnapshotId"]
    assert new_sid != sid and bdm["/dev/xvda"]["Ebs"]["VolumeSize"] == 3
    snap = west.describe_snapshots(SnapshotIds=[new_sid])["Snapshots"][0]
    assert snap["State"] == "completed" and snap["VolumeSize"] == 2
    assert {"Key": "of", "Value": source} in snap["Tags"]
    assert copy_id in snap["Description"] and source in snap["Description"]
    # The copy lives only in us-west-2; its snapshot is in use there.
    expect_error("InvalidAMIID.NotFound", east.describe_images, ImageIds=[copy_id])
    expect_error("InvalidSnapshot.InUse", west.delete_snapshot, SnapshotId=new_sid)
    assert copy_id in ids_of(west.describe_images(Filters=[{"Name": "source-image-id", "Values": [source]},
                                                            {"Name": "source-image-region", "Values": ["us-east-*"]}]))
    # Same-region copy, idempotent with a client token.
    token = uuid.uuid4().hex
    same = east.copy_image(SourceRegion="us-east-1", SourceImageId=source, Name=unique("same"), ClientToken=token)
    again = east.copy_image(SourceRegion="us-east-1", SourceImageId=source, Name=unique("same"), ClientToken=token)
    assert same["ImageId"] == again["ImageId"]
    east.get_waiter("image_available").wait(ImageIds=[same["ImageId"]], WaiterConfig=FAST_WAITER)
    assert "Tags" not in describe_one(east, same["ImageId"])
    # Errors.
    expect_error("InvalidAMIName.Duplicate", west.copy_image, SourceRegion="us-east-1", SourceImageId=source, Name=name)
    expect_error("InvalidAMIID.NotFound", west.copy_image, SourceRegion="us-west-2", SourceImageId=source, Name=unique())
    expect_error("InvalidParameterValue", west.copy_image, SourceRegion="mars-north-1", SourceImageId=source, Name=unique())
    b_west = ec2(bob, region="us-west-2")
    expect_error("InvalidAMIID.NotFound", b_west.copy_image, SourceRegion="us-east-1", SourceImageId=source, Name=unique())
    # Shared image but unshared snapshots: the storage is not accessible.
    east.modify_image_attribute(ImageId=source, LaunchPermission={"Add": [{"UserId": bob["AccountId"]}]})
    expect_error("InvalidRequest", b_west.copy_image, SourceRegion="us-east-1", SourceImageId=source, Name=unique())
    east.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                   OperationType="add", UserIds=[bob["AccountId"]])
    bobs = b_west.copy_image(SourceRegion="us-east-1", SourceImageId=source, Name=unique(), CopyImageTags=True)["ImageId"]
    b_west.get_waiter("image_available").wait(ImageIds=[bobs], WaiterConfig=FAST_WAITER)
    mine = describe_one(b_west, bobs)
    assert mine["OwnerId"] == bob["AccountId"] and "Tags" not in mine  # another account's tags are not copied
    # Deregistering the copy with its snapshots cleans up the destination region.
    r = west.deregister_image(ImageId=copy_id, DeleteAssociatedSnapshots=True)
    assert r["DeleteSnapshotResults"] == [{"SnapshotId": new_sid, "ReturnCode": "success"}]


def test_aws_cli(alice, bob, aws, ec2):
    c = ec2(alice)
    image_id = register(c, name=unique("cli"))
    out = aws(alice, "ec2", "describe-images", "--owners", "self")
    assert image_id in {i["ImageId"] for i in out["Images"]}
    out = aws(alice, "ec2", "describe-images", "--image-ids", image_id,
              "--filters", "Name=root-device-type,Values=ebs")
    assert out["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True
    aws(alice, "ec2", "modify-image-attribute", "--image-id", image_id,
        "--launch-permission", f"Add=[{{UserId={bob['AccountId']}}}]")
    out = aws(bob, "ec2", "describe-images", "--executable-users", "self")
    assert image_id in {i["ImageId"] for i in out["Images"]}
    sid = make_snapshot(c)
    out = aws(alice, "ec2", "register-image", "--name", unique("cli-reg"), "--root-device-name", "/dev/xvda",
              "--block-device-mappings", f"DeviceName=/dev/xvda,Ebs={{SnapshotId={sid}}}")
    assert out["ImageId"].startswith("ami-")
    failed = aws(alice, "ec2", "describe-images", "--image-ids", "ami-0123456789abcdef0", check=False)
    assert failed.returncode != 0 and "InvalidAMIID.NotFound" in failed.stderr
    out = aws(alice, "ec2", "deregister-image", "--image-id", out["ImageId"], "--delete-associated-snapshots")
    assert out["DeleteSnapshotResults"] == [{"SnapshotId": sid, "ReturnCode": "success"}]

"""Allowed AMIs through boto3 and the AWS CLI: criteria by provider account and by name,
audit mode (every image says whether it would be allowed), enabled (other accounts'
images outside the criteria are neither described nor launched; the account's own always
are), refusals, and turning it off."""

import uuid

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code


def public_image(c, name):
    vid = c.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    c.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST_WAITER)
    snap = c.create_snapshot(VolumeId=vid)["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    c.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                OperationType="add", GroupNames=["all"])
    image = c.register_image(Name=name, RootDeviceName="/dev/xvda", Architecture="x86_64",
                             BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    c.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"Group": "all"}]})
    return image


def refused(fn, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn(**kw)
    return error_code(e.value)


def test_allowed_images(server, ec2, aws):
    tag = uuid.uuid4().hex[:6]
    viewer, trusted, other = (server.create_account(f"{n}-{tag}") for n in ("viewer", "trusted", "other"))
    v = ec2(viewer)
    trusted_img = public_image(ec2(trusted), f"trusted-{tag}")
    web_img = public_image(ec2(other), f"web-{tag}")
    misc_img = public_image(ec2(other), f"misc-{tag}")
    own_img = public_image(v, f"own-{tag}")
    ids = [trusted_img, web_img, misc_img, own_img]

    def seen():
        got = [
            i for i in v.describe_images(ExecutableUsers=["all"])["Images"] if i["ImageId"] in ids]
        return {i["ImageId"]: i.get("ImageAllowed") for i in got}

    settings = v.get_allowed_images_settings()
    assert (settings["State"], settings.get("ImageCriteria", []), settings["ManagedBy"]) == ("disabled", [], "account")
    assert seen() == {i: None for i in ids}

    v.replace_image_criteria_in_allowed_images_settings(ImageCriteria=[
        {"ImageProviders": [trusted["AccountId"]]},
        {"ImageProviders": [other["AccountId"]], "ImageNames": ["web-*"], "CreationDateCondition": {"MaximumDaysSinceCreated": 30}}])
    got = v.get_allowed_images_settings()["ImageCriteria"]
    assert got[0]["ImageProviders"] == [trusted["AccountId"]]
    assert got[1]["ImageNames"] == ["web-*"] and got[1]["CreationDateCondition"] == {"MaximumDaysSinceCreated": 30}

    # Audit mode: nothing hidden, each image says whether it would be allowed.
    assert v.enable_allowed_images_settings(AllowedImagesSettingsState="audit-mode")["AllowedImagesSettingsState"] == "audit-mode"
    assert seen() == {trusted_img: True, web_img: True, misc_img: False, own_img: True}

    # Enabled: the image no criterion allows is gone for this account, and only for it.
    v.enable_allowed_images_settings(AllowedImagesSettingsState="enabled")
    assert seen() == {trusted_img: True, web_img: True, own_img: True}
    assert refused(v.describe_images, ImageIds=[misc_img]) == "InvalidAMIID.NotFound"
    assert refused(v.run_instances, ImageId=misc_img, MinCount=1, MaxCount=1,
                   InstanceType="t3.micro") == "InvalidAMIID.NotFound"
    assert v.describe_instances()["Reservations"] == []
    assert misc_img in {i["ImageId"] for i in ec2(trusted).describe_images(ExecutableUsers=["all"])["Images"]}
    # Per region.
    assert ec2(viewer, region="eu-west-1").get_allowed_images_settings()["State"] == "disabled"

    # `none`: only the account's own images.
    v.replace_image_criteria_in_allowed_images_settings(ImageCriteria=[{"ImageProviders": ["none"]}])
    assert seen() == {own_img: True}
    cli = aws(viewer, "ec2", "get-allowed-images-settings")
    assert cli["State"] == "enabled" and cli["ImageCriteria"] == [{"ImageProviders": ["none"]}]

    for criteria in ([{"ImageProviders": ["none", trusted["AccountId"]]}],
                     [{"ImageProviders": ["someone"]}],
                     [{"ImageProviders": ["amazon"]}] * 11):
        assert refused(v.replace_image_criteria_in_allowed_images_settings, ImageCriteria=criteria) == "InvalidParameterValue"
    assert refused(v.enable_allowed_images_settings, AllowedImagesSettingsState="disabled") == "InvalidParameterValue"

    assert v.disable_allowed_images_settings()["AllowedImagesSettingsState"] == "disabled"
    assert seen() == {i: None for i in ids}

"""The console's full launch wizard and launch templates, in a real headless Chromium
(Playwright) against the real binary, checked through boto3: a new key pair whose private
key downloads exactly once, a new security group with inbound rules, root volume size and
type, an extra volume deleted on termination, user data from a file or text, count 2, a
failed launch that says what it made, and a launch template made from an image's page,
launched from and deleted.

The images are empty 1 GiB EBS images (nothing to boot): the checks are on the API's
state, and only the first test waits for `running` (with QEMU). Every test terminates
its instances."""

import base64
import re
from pathlib import Path

from conftest import FAST_WAITER, error_code
from test_console import HAVE_QEMU, REGION, browser, own_image, shots, signed_in  # noqa: F401

import botocore.exceptions
import pytest

USER_DATA_FILE = b"#!/bin/sh\necho from-a-file\n\x00\xff binary tail\n"


def instance_of(ec2, creds, instance_id):
    got = ec2(creds).describe_instances(InstanceIds=[instance_id])
    return got["Reservations"][0]["Instances"][0]


def terminate(ec2, creds, ids):
    c = ec2(creds)
    c.terminate_instances(InstanceIds=ids)
    c.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST_WAITER)


def launched_ids(page):
    return re.findall(r"i-[0-9a-f]{17}", page.inner_text("#flash"))


def test_wizard_new_key_new_group_storage_and_user_data_file(server, browser, alice, bob, ec2,
                                                             shots):
    image = own_image(ec2, alice, "wizard-full-image")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/launch?image={image}")
    page.fill("#launch input[name=name]", "wizard-full")
    page.fill("#launch input[name=new_key]", "wizard-key")
    page.select_option("#launch select[name=new_key_type]", "rsa")
    page.fill("#launch input[name=new_group]", "wizard-web")
    page.check("#launch input[name=port][value='80']")
    page.fill("#launch input[name=custom_port]", "8000-8100")
    page.fill("#launch input[name=source_cidr]", "10.1.0.0/16")
    page.fill("#launch input[name=root_size]", "2")
    page.select_option("#launch select[name=root_type]", "gp3")
    page.fill("#launch input[name=vol1_size]", "1")
    page.select_option("#launch select[name=vol1_type]", "gp2")
    page.set_input_files("#launch input[name=user_data_file]", files=[
        {"name": "user-data.sh", "mimeType": "text/x-sh", "buffer": USER_DATA_FILE}])
    shots(page, "launch-wizard")
    page.set_viewport_size({"width": 1200, "height": 640})
    page.evaluate("document.getElementById('key-pair').scrollIntoView()")
    shots(page, "launch-wizard", doc=True)
    page.click("#launch button[type=submit]")
    ids = launched_ids(page)
    assert len(ids) == 1, page.inner_text("main")
    instance = ids[0]
    try:
        # The private key: one download, a PEM private key; a second fetch finds nothing.
        link = page.get_attribute("#key-download", "href")
        shots(page, "launch-result")
        # Another account's session cannot take it (and does not use it up).
        other_ctx, other = signed_in(browser, server, bob)
        stolen = other.request.get(server.endpoint + link)
        assert stolen.status == 404 and "PRIVATE KEY" not in stolen.text()
        other_ctx.close()
        with page.expect_download() as dl:
            page.click("#key-download")
        pem = Path(dl.value.path()).read_text()
        assert dl.value.suggested_filename == "wizard-key.pem"
        assert pem.startswith("-----BEGIN") and "PRIVATE KEY-----" in pem
        again = page.request.get(server.endpoint + link)
        assert again.status == 404 and "PRIVATE KEY" not in again.text()
        assert "BEGIN" not in page.content()

        c = ec2(alice)
        group = c.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["wizard-web"]}])["SecurityGroups"]
        assert len(group) == 1
        perms = {(p["IpProtocol"], p["FromPort"], p["ToPort"]):
                 [r["CidrIp"] for r in p["IpRanges"]] for p in group[0]["IpPermissions"]}
        assert perms == {("tcp", 80, 80): ["10.1.0.0/16"], ("tcp", 8000, 8100): ["10.1.0.0/16"]}
        assert group[0]["GroupId"] in page.inner_text("#new-group")

        got = instance_of(ec2, alice, instance)
        assert got["KeyName"] == "wizard-key"
        assert [g["GroupId"] for g in got["SecurityGroups"]] == [group[0]["GroupId"]]
        assert {"Key": "Name", "Value": "wizard-full"} in got["Tags"]
        by_device = {m["DeviceName"]: m["Ebs"] for m in got["BlockDeviceMappings"]}
        assert set(by_device) == {"/dev/xvda", "/dev/sdf"}, by_device
        assert all(e["DeleteOnTermination"] for e in by_device.values())
        vols = {v["VolumeId"]: v for v in c.describe_volumes(
            VolumeIds=[e["VolumeId"] for e in by_device.values()])["Volumes"]}
        root = vols[by_device["/dev/xvda"]["VolumeId"]]
        extra = vols[by_device["/dev/sdf"]["VolumeId"]]
        assert (root["Size"], root["VolumeType"]) == (2, "gp3")
        assert (extra["Size"], extra["VolumeType"]) == (1, "gp2")

        ud = c.describe_instance_attribute(InstanceId=instance, Attribute="userData")
        assert base64.b64decode(ud["UserData"]["Value"]) == USER_DATA_FILE
        keys = c.describe_key_pairs(KeyNames=["wizard-key"])["KeyPairs"]
        assert keys[0]["KeyType"] == "rsa"
        if HAVE_QEMU:
            c.get_waiter("instance_running").wait(InstanceIds=[instance],
                                                  WaiterConfig=FAST_WAITER)
    finally:
        terminate(ec2, alice, [instance])
    # Both volumes were to be deleted with the instance.
    for _ in range(60):
        left = [v for v in ec2(alice).describe_volumes(
            Filters=[{"Name": "volume-id", "Values": [root["VolumeId"], extra["VolumeId"]]}]
        )["Volumes"] if v["State"] != "deleted"]
        if not left:
            break
        page.wait_for_timeout(1000)
    assert not left, left
    ctx.close()


def test_wizard_count_two_existing_key_group_text_user_data(server, browser, alice, ec2):
    image = own_image(ec2, alice, "wizard-two-image")
    c = ec2(alice)
    c.create_key_pair(KeyName="wizard-old-key")
    vpc = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = c.create_security_group(GroupName="wizard-existing", Description="x",
                                 VpcId=vpc["VpcId"])["GroupId"]
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/launch?image={image}")
    page.select_option("#launch select[name=key]", "wizard-old-key")
    page.check(f"#launch input[name=group][value='{sg}']")
    page.fill("#launch input[name=count]", "2")
    page.check("#launch input[name=root_keep]")
    page.fill("#launch textarea[name=user_data]", "#cloud-config\r\nruncmd: [echo <b>hi</b>]\r\n")
    page.click("#launch button[type=submit]")
    ids = launched_ids(page)
    try:
        assert len(ids) == 2, page.inner_text("main")
        assert page.locator("#key-download").count() == 0
        for i in ids:
            got = instance_of(ec2, alice, i)
            assert got["KeyName"] == "wizard-old-key"
            assert [g["GroupId"] for g in got["SecurityGroups"]] == [sg]
            root = [m for m in got["BlockDeviceMappings"] if m["DeviceName"] == "/dev/xvda"]
            assert root[0]["Ebs"]["DeleteOnTermination"] is False
            ud = c.describe_instance_attribute(InstanceId=i, Attribute="userData")
            assert base64.b64decode(ud["UserData"]["Value"]) == \
                b"#cloud-config\nruncmd: [echo <b>hi</b>]\n"
    finally:
        if ids:
            terminate(ec2, alice, ids)
    ctx.close()


def test_a_failed_launch_says_what_it_made(server, browser, alice, ec2):
    image = own_image(ec2, alice, "wizard-fail-image")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/launch?image={image}")
    page.fill("#launch input[name=new_key]", "wizard-unused-key")
    page.fill("#launch input[name=new_group]", "wizard-kept-group")
    page.check("#launch input[name=port][value='22']")
    # A volume type the engine refuses without IOPS: RunInstances fails after the key
    # pair and the group were made.
    page.fill("#launch input[name=vol1_size]", "10")
    page.select_option("#launch select[name=vol1_type]", "io1")
    page.click("#launch button[type=submit]")
    flash = page.inner_text("#flash")
    assert re.match(r"^[A-Za-z.]+: ", flash) and "iops" in flash.lower(), flash
    already = page.inner_text("#already")
    assert "wizard-unused-key" in already and "deleted" in already
    assert "wizard-kept-group" in already and "kept" in already
    c = ec2(alice)
    assert "wizard-unused-key" not in [k["KeyName"] for k in c.describe_key_pairs()["KeyPairs"]]
    kept = c.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["wizard-kept-group"]}])["SecurityGroups"]
    assert len(kept) == 1 and kept[0]["IpPermissions"][0]["FromPort"] == 22
    running = c.describe_instances(Filters=[{"Name": "image-id", "Values": [image]}])
    assert running["Reservations"] == []
    # A bad form field is refused in words before anything is made.
    page.goto(server.endpoint + f"/console/{REGION}/launch?image={image}")
    page.fill("#launch input[name=new_key]", "wizard-unused-key-2")
    page.check("#launch input[name=port][value='443']")
    page.click("#launch button[type=submit]")
    assert page.inner_text("#flash").startswith("MissingParameter: ")
    assert "wizard-unused-key-2" not in [k["KeyName"] for k in c.describe_key_pairs()["KeyPairs"]]
    # The multipart form without its CSRF token runs nothing.
    refused = page.request.post(server.endpoint + f"/console/{REGION}/launch",
                                multipart={"image": image, "new_key": "wizard-csrf-key"})
    assert refused.status == 403
    assert "wizard-csrf-key" not in [k["KeyName"] for k in c.describe_key_pairs()["KeyPairs"]]
    ctx.close()


def test_launch_template_from_the_image_page(server, browser, alice, ec2, shots):
    image = own_image(ec2, alice, "wizard-template-image")
    c = ec2(alice)
    vpc = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = c.create_security_group(GroupName="wizard-template-sg", Description="x",
                                 VpcId=vpc["VpcId"])["GroupId"]
    c.create_key_pair(KeyName="wizard-template-key")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    form = "#create-template"
    page.fill(f"{form} input[name=template_name]", "wizard-template")
    shots(page, "image-create-template")
    page.select_option(f"{form} select[name=type]", "t3.small")
    page.select_option(f"{form} select[name=key]", "wizard-template-key")
    page.check(f"{form} input[name=group][value='{sg}']")
    page.click(f"{form} button[type=submit]")
    assert page.url.endswith(f"/console/{REGION}/launch-templates")
    assert "Created the launch template wizard-template" in page.inner_text("#flash")
    shots(page, "launch-templates", doc=True)
    templates = c.describe_launch_templates(LaunchTemplateNames=["wizard-template"])
    lt = templates["LaunchTemplates"][0]
    row = page.locator(f"tr[data-id='{lt['LaunchTemplateId']}']")
    assert "wizard-template" in row.inner_text() and image in row.inner_text()
    data = c.describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["ImageId"] == image and data["InstanceType"] == "t3.small"
    assert data["KeyName"] == "wizard-template-key" and data["SecurityGroupIds"] == [sg]

    # A name the engine refuses comes back to the image page in words.
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    page.fill(f"{form} input[name=template_name]", "wizard-template")
    page.click(f"{form} button[type=submit]")
    assert f"/images/{image}" in page.url
    assert page.inner_text("#flash").startswith(
        "InvalidLaunchTemplateName.AlreadyExistsException: ")

    # The form without its CSRF token runs nothing.
    refused = page.request.post(server.endpoint + f"/console/{REGION}/launch-templates",
                                form={"image": image, "template_name": "wizard-csrf"})
    assert refused.status == 403

    # Launch from it: RunInstances with LaunchTemplate.
    page.goto(server.endpoint + f"/console/{REGION}/launch-templates")
    row.locator("form[action$='/launch'] button").click()
    ids = launched_ids(page)
    try:
        assert len(ids) == 1, page.inner_text("main")
        got = instance_of(ec2, alice, ids[0])
        assert got["ImageId"] == image and got["InstanceType"] == "t3.small"
        assert got["KeyName"] == "wizard-template-key"
        assert [g["GroupId"] for g in got["SecurityGroups"]] == [sg]
        assert {"Key": "aws:ec2launchtemplate:id", "Value": lt["LaunchTemplateId"]} in got["Tags"]
    finally:
        if ids:
            terminate(ec2, alice, ids)

    # Delete, with the confirmation box ticked.
    page.goto(server.endpoint + f"/console/{REGION}/launch-templates")
    row.locator("form[action$='/delete'] input[name=confirm]").check()
    row.locator("form[action$='/delete'] button").click()
    assert "Deleted the launch template wizard-template" in page.inner_text("#flash")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_launch_templates(LaunchTemplateNames=["wizard-template"])
    assert error_code(e.value).startswith("InvalidLaunchTemplateName.NotFound")
    ctx.close()

"""Operator catalogs: `openami catalog import` publishes the JSON `aws ec2 describe-images`
prints — Quick Start images of `amazon` and marketplace images with product codes — while
the server runs, keeping ids, names and attributes, so that `--owners amazon` lookups,
hard-coded AMI ids and `most_recent`-style name filters work from every account."""

import json
import secrets
import subprocess

import botocore.exceptions
import pytest

from conftest import FAST_WAITER, error_code, openami_bin

AMAZON = "137112412989"
MARKETPLACE = "679593333241"
PRODUCT_CODE = "cvbwwoa5ch7qjrqaz4lczt2xo"


def ami():
    return "ami-0" + secrets.token_hex(8)


def snap_ref():
    return "snap-0" + secrets.token_hex(8)


def al2023(image_id, version, created, deprecation="2099-01-01T00:00:00.000Z", arch="x86_64",
           family="al2023-ami"):
    """An entry as `aws ec2 describe-images --owners amazon` prints it. Tests that import
    more than the module's catalog use another name family, so that name lookups of the
    catalog give the same answer whatever order the tests run in."""
    name = f"{family}-{version}-kernel-6.1-{arch}"
    return {
        "Architecture": arch, "CreationDate": created, "ImageId": image_id,
        "ImageLocation": f"amazon/{name}", "ImageType": "machine", "Public": True,
        "OwnerId": AMAZON, "PlatformDetails": "Linux/UNIX", "UsageOperation": "RunInstances",
        "State": "available",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
            "DeleteOnTermination": True, "Iops": 3000, "SnapshotId": snap_ref(), "VolumeSize": 8,
            "VolumeType": "gp3", "Throughput": 125, "Encrypted": False}}],
        "Description": f"Amazon Linux 2023 AMI {version} {arch} HVM kernel-6.1",
        "EnaSupport": True, "Hypervisor": "xen", "ImageOwnerAlias": "amazon", "Name": name,
        "RootDeviceName": "/dev/xvda", "RootDeviceType": "ebs", "SriovNetSupport": "simple",
        "VirtualizationType": "hvm", "BootMode": "uefi-preferred",
        "DeprecationTime": deprecation, "ImdsSupport": "v2.0",
        "SourceInstanceId": "i-0123456789abcdef0",
    }


def marketplace(image_id):
    return {
        "ImageId": image_id, "Name": f"vendor-firewall-{image_id[-6:]} (byol)",
        "OwnerId": MARKETPLACE, "ImageOwnerAlias": "aws-marketplace", "Public": True,
        "CreationDate": "2024-03-01T10:00:00.000Z",
        "ProductCodes": [{"ProductCodeId": PRODUCT_CODE, "ProductCodeType": "marketplace"}],
        "RootDeviceName": "/dev/sda1", "RootDeviceType": "ebs",
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {
            "SnapshotId": snap_ref(), "VolumeSize": 20, "VolumeType": "gp2",
            "DeleteOnTermination": True, "Encrypted": False}}],
    }


def run_import(server, images, *flags, tmp_path=None, raw=None):
    """Runs `openami catalog import` on a file (or stdin with raw bytes); returns
    (exit status, parsed summary or None, stderr)."""
    args = [openami_bin(), "catalog", "import", "--data-dir", str(server.data_dir), *flags]
    if raw is not None:
        out = subprocess.run(args + ["-"], input=raw, capture_output=True)
    else:
        path = tmp_path / f"images-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps({"Images": images}))
        out = subprocess.run(args + [str(path)], capture_output=True)
    stdout = out.stdout.decode()
    return out.returncode, (json.loads(stdout) if stdout.strip() else None), out.stderr.decode()


def ids_of(response):
    return {i["ImageId"] for i in response["Images"]}


@pytest.fixture(scope="module")
def catalog(server, tmp_path_factory):
    """Quick Start (two al2023 versions, one old deprecated one, an arm64 one) and a
    marketplace image, imported while the server runs."""
    ids = {"old": ami(), "new": ami(), "ancient": ami(), "arm": ami(), "mp": ami()}
    images = [
        al2023(ids["old"], "2023.6.20241111.0", "2024-11-12T01:02:03.000Z"),
        al2023(ids["new"], "2023.6.20241212.0", "2024-12-12T20:35:27.000Z"),
        al2023(ids["ancient"], "2023.0.20230315.0", "2023-03-15T00:00:00.000Z",
               deprecation="2025-03-15T00:00:00.000Z"),
        al2023(ids["arm"], "2023.6.20241212.0", "2024-12-12T20:35:27.000Z", arch="arm64"),
        marketplace(ids["mp"]),
    ]
    tmp = tmp_path_factory.mktemp("catalog")
    status, summary, stderr = run_import(server, images, tmp_path=tmp)
    assert status == 0, stderr
    assert summary["Imported"] == [i["ImageId"] for i in images]
    assert summary["Skipped"] == [] and summary["Errors"] == []
    return {"ids": ids, "images": images, "tmp": tmp}


def test_owners_amazon_from_every_account(catalog, alice, bob, ec2):
    ids = catalog["ids"]
    quick_start = {ids["old"], ids["new"], ids["arm"]}
    for creds in (alice, bob):
        c = ec2(creds)
        found = c.describe_images(Owners=["amazon"])["Images"]
        assert quick_start <= {i["ImageId"] for i in found}
        assert ids["mp"] not in {i["ImageId"] for i in found}
        for image in found:
            assert (image["ImageOwnerAlias"], image["OwnerId"]) == ("amazon", AMAZON)
            assert image["Public"] is True and image["State"] == "available"
        # Hard-coded ids resolve, with the attributes kept.
        image = c.describe_images(ImageIds=[ids["new"]])["Images"][0]
        source = catalog["images"][1]
        for key in ("Name", "Description", "CreationDate", "ImageLocation", "Architecture",
                    "BootMode", "ImdsSupport", "EnaSupport", "SriovNetSupport",
                    "RootDeviceName", "PlatformDetails", "UsageOperation", "DeprecationTime"):
            assert image[key] == source[key], key
        assert image["BlockDeviceMappings"] == source["BlockDeviceMappings"]
        assert ids["old"] in ids_of(c.describe_images(Owners=["amazon"], ExecutableUsers=["all"]))
        # The deprecated one is hidden unless asked for.
        assert ids["ancient"] not in ids_of(c.describe_images(Owners=["amazon"]))
        assert ids["ancient"] in ids_of(c.describe_images(Owners=["amazon"], IncludeDeprecated=True))
        assert ids["ancient"] in ids_of(c.describe_images(ImageIds=[ids["ancient"]]))
        # Nobody owns them through the API.
        assert not ids_of(c.describe_images(Owners=["self"])) & set(ids.values())


def test_most_recent_by_name_filter(catalog, alice, bob, ec2):
    """What Terraform's `most_recent = true` and similar lookups do."""
    for creds in (alice, bob):
        c = ec2(creds)
        images = c.describe_images(Owners=["amazon"], Filters=[
            {"Name": "name", "Values": ["al2023-ami-2023.*-kernel-6.1-x86_64"]},
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "state", "Values": ["available"]},
        ])["Images"]
        assert ids_of({"Images": images}) == {catalog["ids"]["old"], catalog["ids"]["new"]}
        newest = max(images, key=lambda i: i["CreationDate"])
        assert newest["ImageId"] == catalog["ids"]["new"]
        by_alias = c.describe_images(Filters=[{"Name": "owner-alias", "Values": ["amazon"]},
                                              {"Name": "name", "Values": ["al2023-ami-*-arm64"]}])
        assert ids_of(by_alias) == {catalog["ids"]["arm"]}
        by_owner = c.describe_images(Owners=[AMAZON], Filters=[{"Name": "name", "Values": ["al2023-ami-*"]}])
        assert {catalog["ids"]["old"], catalog["ids"]["new"], catalog["ids"]["arm"]} <= ids_of(by_owner)


def test_marketplace_and_product_codes(catalog, alice, bob, ec2):
    mp = catalog["ids"]["mp"]
    for creds in (alice, bob):
        c = ec2(creds)
        assert ids_of(c.describe_images(Owners=["aws-marketplace"])) == {mp}
        found = c.describe_images(Filters=[{"Name": "product-code", "Values": [PRODUCT_CODE]}])
        assert ids_of(found) == {mp}
        image = found["Images"][0]
        assert image["ProductCodes"] == [{"ProductCodeId": PRODUCT_CODE, "ProductCodeType": "marketplace"}]
        assert (image["ImageOwnerAlias"], image["OwnerId"]) == ("aws-marketplace", MARKETPLACE)
        assert mp in ids_of(c.describe_images(Filters=[{"Name": "product-code.type", "Values": ["marketplace"]}]))
        assert mp not in ids_of(c.describe_images(Owners=["amazon"]))


def test_is_public_and_private_flag(server, catalog, alice, ec2):
    c = ec2(alice)
    public = ids_of(c.describe_images(Filters=[{"Name": "is-public", "Values": ["true"]}]))
    assert {catalog["ids"]["new"], catalog["ids"]["mp"]} <= public
    hidden = ami()
    status, summary, _ = run_import(
        server, [al2023(hidden, "2023.9.1", "2025-01-01T00:00:00.000Z", family="extra")], "--private",
        tmp_path=catalog["tmp"])
    assert status == 0 and summary["Imported"] == [hidden]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_images(ImageIds=[hidden])
    assert error_code(e.value) == "InvalidAMIID.NotFound"
    assert hidden not in ids_of(c.describe_images(Owners=["amazon"]))


def test_cli_owners_amazon_name_filter(catalog, alice, aws):
    out = aws(alice, "ec2", "describe-images", "--owners", "amazon",
              "--filters", "Name=name,Values=al2023-ami-*")
    found = {i["ImageId"] for i in out["Images"]}
    ids = catalog["ids"]
    assert {ids["old"], ids["new"], ids["arm"]} <= found and ids["mp"] not in found
    newest = aws(alice, "ec2", "describe-images", "--owners", "amazon",
                 "--filters", "Name=name,Values=al2023-ami-*-x86_64",
                 "--query", "sort_by(Images, &CreationDate)[-1].ImageId")
    assert newest == ids["new"]


def test_reimport_skips_and_replace_overwrites(server, catalog, bob, ec2):
    status, summary, _ = run_import(server, catalog["images"], tmp_path=catalog["tmp"])
    assert status == 0 and summary["Imported"] == [] and summary["Errors"] == []
    assert [s["ImageId"] for s in summary["Skipped"]] == [i["ImageId"] for i in catalog["images"]]
    assert all("--replace" in s["Reason"] for s in summary["Skipped"])
    changed = dict(catalog["images"][0], Description="refreshed")
    status, summary, _ = run_import(server, [changed], "--replace", tmp_path=catalog["tmp"])
    assert status == 0 and summary["Imported"] == [changed["ImageId"]]
    image = ec2(bob).describe_images(ImageIds=[changed["ImageId"]])["Images"][0]
    assert image["Description"] == "refreshed" and image["Public"] is True
    # Same owner and name under another id.
    dup = dict(catalog["images"][1], ImageId=ami())
    status, summary, _ = run_import(server, [dup], tmp_path=catalog["tmp"])
    assert status == 1 and summary["Errors"][0]["Code"] == "InvalidAMIName.Duplicate"


def test_malformed_entries_are_reported(server, catalog, alice, ec2):
    good, bad_name, bad_size = ami(), ami(), ami()
    images = [
        al2023(good, "2023.7.1", "2025-02-01T00:00:00.000Z", family="extra"),
        dict(al2023(bad_name, "2023.7.2", "2025-02-01T00:00:00.000Z", family="extra"), Name="bad#name"),
        dict(al2023(bad_size, "2023.7.3", "2025-02-01T00:00:00.000Z", family="extra"), EnaSupport="yes"),
        {"Name": "no-id-at-all"},
    ]
    status, summary, _ = run_import(server, images, tmp_path=catalog["tmp"])
    assert status == 1
    assert summary["Imported"] == [good]
    errors = {e["Index"]: e for e in summary["Errors"]}
    assert errors[1]["ImageId"] == bad_name and errors[1]["Code"] == "InvalidAMIName.Malformed"
    assert errors[2]["ImageId"] == bad_size and "EnaSupport" in errors[2]["Message"]
    assert errors[3]["ImageId"] is None and errors[3]["Code"] == "MissingParameter"
    assert good in ids_of(ec2(alice).describe_images(Owners=["amazon"]))
    # Not JSON at all, through stdin: nothing imported, an error on stderr.
    status, summary, stderr = run_import(server, None, raw=b"{not json")
    assert status == 1 and summary is None and "not valid JSON" in stderr
    # A bare list through stdin works.
    piped = ami()
    status, summary, _ = run_import(
        server, None, raw=json.dumps([al2023(piped, "2023.7.9", "2025-02-02T00:00:00Z", family="extra")]).encode())
    assert status == 0 and summary["Imported"] == [piped]


def make_snapshot(c, size=1):
    vid = c.create_volume(AvailabilityZone="us-east-1a", Size=size)["VolumeId"]
    sid = c.create_snapshot(VolumeId=vid)["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST_WAITER)
    return sid


def test_root_snapshot(server, catalog, alice, bob, ec2):
    """--root-snapshot puts a local snapshot behind the root device. The operator owns the
    image, not the snapshot: a public image needs a public snapshot (Group=all), so that
    everyone who may launch the image can use its storage."""
    a, b = ec2(alice), ec2(bob)
    sid = make_snapshot(a)
    image_id = ami()
    entry = al2023(image_id, "2023.8.1", "2025-03-01T00:00:00.000Z", family="extra")
    status, summary, _ = run_import(server, [entry], "--root-snapshot", sid, tmp_path=catalog["tmp"])
    assert status == 1 and "Group=all" in summary["Errors"][0]["Message"]
    status, _, stderr = run_import(server, [entry], "--root-snapshot", snap_ref(), tmp_path=catalog["tmp"])
    assert status == 1 and "does not exist" in stderr
    a.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission",
                                OperationType="add", GroupNames=["all"])
    status, summary, stderr = run_import(server, [entry], "--root-snapshot", sid, tmp_path=catalog["tmp"])
    assert status == 0 and summary["Imported"] == [image_id], stderr
    image = b.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == sid
    assert image["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 8
    # Its storage is usable: bob can copy it. A catalog image whose snapshots are not
    # stored here cannot be copied.
    copy = b.copy_image(SourceRegion="us-east-1", SourceImageId=image_id, Name="my-al2023-copy")["ImageId"]
    b.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig=FAST_WAITER)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        b.copy_image(SourceRegion="us-east-1", SourceImageId=catalog["ids"]["new"], Name="no-storage")
    assert error_code(e.value) == "InvalidRequest"

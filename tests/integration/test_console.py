"""The web console (/console) in a real headless Chromium, driven by Playwright for Python
against the real binary: sign-in, the AMI catalog tabs over a catalog imported with
`openami catalog import`, sharing an image with another account, XSS and CSRF attempts,
sessions that end, and the volume/snapshot pages with live state.

Chromium is Debian's (`/usr/bin/chromium`, or OPENAMI_CHROMIUM); Playwright's own browser
download is never used. Screenshots of every page land in the test's temp dir
(`console-shots/`); with OPENAMI_CONSOLE_DOCS=DIR a few are also written there (that is
how docs/console/*.png were made)."""

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import FAST_WAITER
from test_catalog import al2023, ami, marketplace, run_import
from test_instances import guest_image, guest_raw  # noqa: F401 (fixtures)
from test_tls import pki  # noqa: F401 (fixture)

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pip install playwright (the driver only; the browser is Debian's)
    expect = sync_playwright = None

CHROMIUM = os.environ.get("OPENAMI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REGION = "us-east-1"
HAVE_QEMU = shutil.which("qemu-system-x86_64") is not None or os.environ.get("CI") == "true"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def browser():
    missing = None
    if sync_playwright is None:
        missing = "playwright is missing (pip install playwright)"
    elif not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("console-shots")
    docs = os.environ.get("OPENAMI_CONSOLE_DOCS")

    def shot(page, name, doc=False):
        path = d / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if doc and docs:
            Path(docs).mkdir(parents=True, exist_ok=True)
            page.set_viewport_size({"width": 1200, "height": 640})
            page.screenshot(path=str(Path(docs) / f"{name}.png"))
        return path
    return shot


@pytest.fixture(scope="module")
def catalog(server, tmp_path_factory):
    """Quick Start images (x86_64 and arm64) and a marketplace image."""
    ids = {"qs": ami(), "arm": ami(), "mp": ami()}
    images = [
        al2023(ids["qs"], "2023.6.20250101.0", "2025-01-01T00:00:00.000Z",
               family="console-al2023"),
        al2023(ids["arm"], "2023.6.20250101.0", "2025-01-02T00:00:00.000Z", arch="arm64",
               family="console-al2023"),
        marketplace(ids["mp"]),
    ]
    status, _, stderr = run_import(server, images, tmp_path=tmp_path_factory.mktemp("cat"))
    assert status == 0, stderr
    return ids


def own_image(ec2, creds, name, description=None, public=False):
    """Registers an EBS image of `creds` from a snapshot of a fresh 1 GiB volume."""
    c = ec2(creds)
    vol = c.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
    c.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    snap = c.create_snapshot(VolumeId=vol)["SnapshotId"]
    c.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    args = dict(Name=name, RootDeviceName="/dev/xvda", Architecture="x86_64",
                VirtualizationType="hvm",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])
    if description:
        args["Description"] = description
    image = c.register_image(**args)["ImageId"]
    if public:
        c.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"Group": "all"}]})
    return image


def signed_in(browser, server, creds, dialogs=None):
    """A new browser context signed in as `creds`; returns (context, page)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    if dialogs is not None:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.endpoint + "/console")
    assert page.url.endswith("/console/signin")
    page.fill("input[name=access_key_id]", creds["AccessKeyId"])
    page.fill("input[name=secret_access_key]", creds["SecretAccessKey"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console/[a-z0-9-]+$"))
    return ctx, page


def test_sign_in_wrong_secret_is_refused(server, browser, alice, shots):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(server.endpoint + "/console/signin")
    shots(page, "signin", doc=False)
    page.fill("input[name=access_key_id]", alice["AccessKeyId"])
    page.fill("input[name=secret_access_key]", alice["SecretAccessKey"] + "x")
    page.click("button[type=submit]")
    assert "AuthFailure" in page.inner_text("#flash")
    assert not [c for c in ctx.cookies() if c["name"] == "openami_console"]
    # Pages still send the browser to sign in.
    page.goto(server.endpoint + f"/console/{REGION}/images")
    assert page.url.endswith("/console/signin")
    ctx.close()


def test_sign_in_sets_a_strict_http_only_cookie_and_csp(server, browser, alice, shots):
    ctx, page = signed_in(browser, server, alice)
    cookie = next(c for c in ctx.cookies() if c["name"] == "openami_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert len(cookie["value"]) == 64
    assert page.inner_text("#account") == alice["AccountId"]
    response = page.goto(server.endpoint + f"/console/{REGION}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    shots(page, "home")
    ctx.close()


def test_catalog_tabs_search_and_filters(server, browser, alice, bob, ec2, catalog, shots):
    community = own_image(ec2, bob, "console-community-image", public=True)
    ctx, page = signed_in(browser, server, alice)
    base = server.endpoint + f"/console/{REGION}/images"

    page.goto(base + "?tab=quickstart")
    text = page.inner_text("#images")
    assert catalog["qs"] in text and catalog["arm"] in text
    assert catalog["mp"] not in text and community not in text
    shots(page, "catalog-quickstart", doc=True)

    page.select_option("select[name=arch]", "arm64")
    page.click("form.filters button")
    text = page.inner_text("#images")
    assert catalog["arm"] in text and catalog["qs"] not in text

    page.goto(base + "?tab=quickstart&q=CONSOLE-AL2023&sort=newest")
    rows = page.locator("#images tbody tr").all_inner_texts()
    assert catalog["arm"] in rows[0] and catalog["qs"] in rows[1]  # newest first

    page.goto(base + "?tab=marketplace")
    assert catalog["mp"] in page.inner_text("#images")
    shots(page, "catalog-marketplace")

    page.goto(base + "?tab=community")
    text = page.inner_text("#images")
    assert community in text and catalog["qs"] not in text and catalog["mp"] not in text
    shots(page, "catalog-community")
    ctx.close()


def test_share_with_bob_shows_under_his_my_amis(server, browser, alice, bob, ec2, shots):
    image = own_image(ec2, alice, "console-shared-image", description="shared by alice")
    bctx, bpage = signed_in(browser, server, bob)
    # Private: bob's session sees neither the catalog entry nor the details.
    bpage.goto(server.endpoint + f"/console/{REGION}/images?tab=mine")
    assert image not in bpage.content()
    bpage.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    assert "InvalidAMIID.NotFound" in bpage.content()
    assert "shared by alice" not in bpage.content()

    actx, apage = signed_in(browser, server, alice)
    apage.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    apage.fill("#permissions input[name=account]", bob["AccountId"])
    apage.click("#permissions form:has(input[name=account][type=text]) button")
    assert "Shared" in apage.inner_text("#flash")
    assert bob["AccountId"] in apage.inner_text("#shared-with")
    shots(apage, "image-details", doc=True)
    perms = ec2(alice).describe_image_attribute(ImageId=image, Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"UserId": bob["AccountId"]}]

    bpage.goto(server.endpoint + f"/console/{REGION}/images?tab=mine")
    assert image in bpage.inner_text("#images")
    shots(bpage, "catalog-mine-bob")
    # Bob can read the image but has no owner actions on it.
    bpage.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    assert bpage.inner_text("#image-id") == image
    assert bpage.locator("#permissions").count() == 0

    # Copy to another region: the page of the copy refreshes itself until it is available.
    apage.select_option("#copy select[name=to]", "us-west-2")
    apage.fill("#copy input[name=copy_name]", "console-shared-image-copy")
    apage.click("#copy button")
    assert "/console/us-west-2/images/ami-" in apage.url
    expect(apage.locator("#facts .state")).to_have_attribute(
        "data-state", "available", timeout=60_000)
    copy = apage.inner_text("#image-id")
    assert ec2(alice, region="us-west-2").describe_images(ImageIds=[copy])["Images"][0][
        "Name"] == "console-shared-image-copy"
    apage.goto(server.endpoint + f"/console/{REGION}/images/{image}")

    # Make public, then private again; deregister with confirmation.
    apage.click("#permissions form[action$='/public'] button")
    assert apage.inner_text("#visibility") == "public"
    apage.click("#permissions form[action$='/private'] button")
    assert apage.inner_text("#visibility") == "private"
    apage.check("#deregister input[name=delete_snapshots]")
    apage.check("#deregister input[name=confirm]")
    apage.click("#deregister button")
    assert f"Deregistered {image}" in apage.inner_text("#flash")
    assert not ec2(alice).describe_images(Owners=["self"], Filters=[
        {"Name": "image-id", "Values": [image]}])["Images"]
    actx.close()
    bctx.close()


def test_engine_errors_show_in_words(server, browser, alice, ec2):
    image = own_image(ec2, alice, "console-protected-image")
    ec2(alice).enable_image_deregistration_protection(ImageId=image)
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    page.check("#deregister input[name=confirm]")
    page.click("#deregister button")
    assert "OperationNotPermitted" in page.inner_text("#flash")
    page.fill("#permissions input[name=account]", "12345")
    page.evaluate("document.querySelector('#permissions input[name=account]')"
                  ".removeAttribute('pattern')")
    page.click("#permissions form:has(input[name=account][type=text]) button")
    assert "InvalidAMIAttributeItemValue" in page.inner_text("#flash")
    # Protection off, a deprecation time set and cancelled, all through the page.
    page.click("#protection form[action$='/unprotect'] button")
    assert "disabled" in page.inner_text("#flash")
    page.fill("#deprecation input[name=at]", "2030-01-02T03:04")
    page.click("#deprecation form[action$='/deprecate'] button")
    assert "2030-01-02 03:04:00 UTC" in page.inner_text("#flash")
    got = ec2(alice).describe_images(ImageIds=[image])["Images"][0]
    assert got["DeprecationTime"].startswith("2030-01-02T03:04:00")
    page.click("#deprecation form[action$='/undeprecate'] button")
    assert "DeprecationTime" not in ec2(alice).describe_images(ImageIds=[image])["Images"][0]
    page.check("#deregister input[name=confirm]")
    page.click("#deregister button")
    assert f"Deregistered {image}" in page.inner_text("#flash")
    ctx.close()


def test_xss_in_catalog_values_shows_as_text(server, browser, alice, ec2, shots):
    image = own_image(ec2, alice, "console-xss-image", description=XSS)
    dialogs = []
    ctx, page = signed_in(browser, server, alice, dialogs)
    page.goto(server.endpoint + f"/console/{REGION}/images?tab=mine&q=console-xss")
    assert XSS in page.inner_text("#images")
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    assert XSS in page.inner_text("#facts")
    # A volume named with markup, shown in the volumes list.
    ec2(alice).create_volume(Size=1, AvailabilityZone=f"{REGION}a", TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": XSS}]}])
    page.goto(server.endpoint + f"/console/{REGION}/volumes")
    assert XSS in page.inner_text("#volumes")
    page.wait_for_timeout(500)
    assert dialogs == []
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    shots(page, "xss")
    ctx.close()


def test_csrf_without_or_with_a_wrong_token_is_refused(server, browser, alice, ec2):
    image = own_image(ec2, alice, "console-csrf-image")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    token = page.get_attribute("#permissions input[name=csrf]", "value")
    url = server.endpoint + f"/console/{REGION}/images/{image}/public"
    for form in [{}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": token[:-1] + "x"}]:
        r = page.request.post(url, form=form, max_redirects=0)
        assert r.status == 403, form
    assert not ec2(alice).describe_images(ImageIds=[image])["Images"][0]["Public"]
    # Another session's token does not work for this one.
    other, opage = signed_in(browser, server, alice)
    opage.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    other_token = opage.get_attribute("#permissions input[name=csrf]", "value")
    assert other_token != token
    assert page.request.post(url, form={"csrf": other_token}, max_redirects=0).status == 403
    assert not ec2(alice).describe_images(ImageIds=[image])["Images"][0]["Public"]
    # The right token works (the request is otherwise the same).
    assert page.request.post(url, form={"csrf": token}, max_redirects=0).status == 303
    assert ec2(alice).describe_images(ImageIds=[image])["Images"][0]["Public"]
    other.close()
    ctx.close()


def test_sign_out_ends_the_session(server, browser, alice):
    ctx, page = signed_in(browser, server, alice)
    cookie = next(c for c in ctx.cookies() if c["name"] == "openami_console")
    page.click("form[action='/console/signout'] button")
    page.wait_for_url(re.compile(r"/console/signin$"))
    # The old cookie, put back by hand, is dead.
    ctx.add_cookies([cookie])
    page.goto(server.endpoint + f"/console/{REGION}/images")
    assert page.url.endswith("/console/signin")
    ctx.close()


def test_volumes_and_snapshots_pages(server, browser, alice, bob, ec2, shots):
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/volumes")
    page.fill("#create-volume input[name=name]", "console-vol")
    page.fill("#create-volume input[name=size]", "2")
    page.click("#create-volume button")
    flash = page.inner_text("#flash")
    vol = re.search(r"vol-[0-9a-f]{17}", flash).group(0)
    c = ec2(alice)
    c.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    page.reload()
    row = page.locator(f"tr[id='{vol}']")
    assert "available" in row.inner_text() and "console-vol" in row.inner_text()
    shots(page, "volumes")
    row.locator("form[action$='/snapshot'] button").click()
    snap = re.search(r"snap-[0-9a-f]{17}", page.inner_text("#flash")).group(0)
    assert page.url.endswith("/snapshots")
    # The live region refreshes by itself until the snapshot completes.
    # (the page's CSP forbids eval, so Playwright's string predicates cannot run there)
    expect(page.locator(f"tr[id='{snap}'] .state")).to_have_attribute(
        "data-state", "completed", timeout=60_000)
    shots(page, "snapshots")
    # Share with bob: his API now lists it as restorable by him; then unshare.
    page.fill(f"tr[id='{snap}'] form[action$='/share'] input[name=account]", bob["AccountId"])
    page.click(f"tr[id='{snap}'] form[action$='/share'] button")
    assert f"shared with account {bob['AccountId']}" in page.inner_text("#flash")
    assert snap in [s["SnapshotId"] for s in ec2(bob).describe_snapshots(
        RestorableByUserIds=["self"])["Snapshots"]]
    page.click(f"tr[id='{snap}'] form[action$='/unshare'] button")
    assert "unshared" in page.inner_text("#flash")
    assert snap not in [s["SnapshotId"] for s in ec2(bob).describe_snapshots(
        RestorableByUserIds=["self"])["Snapshots"]]
    page.locator(f"tr[id='{snap}'] form[action$='/volume'] button").click()
    assert "from " + snap in page.inner_text("#flash")
    # Delete without confirmation is refused by the browser (required box) and the server.
    r = page.request.post(server.endpoint + f"/console/{REGION}/snapshots/{snap}/delete",
                          form={"csrf": page.get_attribute("input[name=csrf]", "value")},
                          max_redirects=0)
    assert r.status == 303
    assert c.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
    page.goto(server.endpoint + f"/console/{REGION}/snapshots")
    assert "ConfirmationRequired" in page.inner_text("#flash")
    page.check(f"tr[id='{snap}'] form[action$='/delete'] input[name=confirm]")
    page.click(f"tr[id='{snap}'] form[action$='/delete'] button")
    assert f"Deleted {snap}" in page.inner_text("#flash")
    ctx.close()


def test_instances_page_and_region_switcher(server, browser, alice, shots):
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/instances")
    assert page.locator("#instances").count() == 1
    shots(page, "instances")
    page.click("details.regions summary")
    page.click("details.regions a:text-is('us-west-2')")
    assert page.url.endswith("/console/us-west-2/instances")
    assert page.inner_text("#region") == "us-west-2"
    ctx.close()


def test_launch_wizard_and_instance_actions(server, browser, alice, ec2, shots, request):
    """With QEMU, the test guest boots, prints its user data's output on the console, and
    is stopped, started and terminated from the page; without, RunInstances still runs and
    the page shows why the instance ended."""
    if HAVE_QEMU:
        image, _ = request.getfixturevalue("guest_image")
    else:
        image = own_image(ec2, alice, "console-launch-image")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/images/{image}")
    page.click("#launch-from")
    assert page.input_value("#launch input[name=image]") == image
    assert "2 vCPU, 2.0 GiB" in page.inner_text("#launch select[name=type]")
    page.fill("#launch input[name=name]", "console-web")
    page.select_option("#launch select[name=type]", "t3.small")
    page.fill("#launch input[name=new_key]", "console-key")
    page.fill("#launch input[name=root_size]", "2")
    page.fill("#launch textarea[name=user_data]",
              "#!/bin/sh\necho console-hello\nwhile true; do sleep 1; done\n")
    shots(page, "launch")
    page.click("#launch button[type=submit]")
    instance = re.search(r"i-[0-9a-f]{17}", page.inner_text("#flash")).group(0)
    with page.expect_download() as key:
        page.click("#key-download")
    assert Path(key.value.path()).read_text().startswith("-----BEGIN")
    got = ec2(alice).describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert got["InstanceType"] == "t3.small" and got["KeyName"] == "console-key"
    assert {"Key": "Name", "Value": "console-web"} in got["Tags"]
    assert got["ImageId"] == image
    page.goto(server.endpoint + f"/console/{REGION}/instances")
    assert "console-web" in page.locator(f"tr[data-id='{instance}']").inner_text()
    page.goto(server.endpoint + f"/console/{REGION}/instances/{instance}")
    if not HAVE_QEMU:
        # Without QEMU the machine cannot start: the instance ends, and the page says why.
        expect(page.locator("#state .state")).to_have_attribute(
            "data-state", "terminated", timeout=60_000)
        shots(page, "instance")
        ctx.close()
        return
    # The page refreshes itself (console.js) from pending to running.
    expect(page.locator("#state .state")).to_have_attribute(
        "data-state", "running", timeout=120_000)
    for _ in range(120):
        if "console-hello" in page.inner_text("#console-output"):
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert "console-hello" in page.inner_text("#console-output")
    shots(page, "instance", doc=True)
    assert page.evaluate("document.getElementById('screenshot').naturalWidth") > 0
    # Attach a volume from the volumes page, see it on the instance, detach it.
    vol = ec2(alice).create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
    ec2(alice).get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    page.goto(server.endpoint + f"/console/{REGION}/volumes")
    page.fill(f"tr[id='{vol}'] input[name=instance]", instance)
    page.click(f"tr[id='{vol}'] form[action$='/attach'] button")
    assert f"Attaching {vol} to {instance}" in page.inner_text("#flash")
    ec2(alice).get_waiter("volume_in_use").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    page.reload()
    assert instance in page.inner_text(f"tr[id='{vol}']")
    page.click(f"tr[id='{vol}'] form[action$='/detach'] button")
    assert f"Detaching {vol}" in page.inner_text("#flash")
    ec2(alice).get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST_WAITER)
    page.goto(server.endpoint + f"/console/{REGION}/instances/{instance}")
    page.check("form[action$='/stop'] input[name=confirm]")
    page.click("form[action$='/stop'] button")
    assert "running → stopping" in page.inner_text("#flash")
    expect(page.locator("#state .state")).to_have_attribute(
        "data-state", "stopped", timeout=120_000)
    # Create an image of the stopped instance; its page follows it to available.
    page.fill("#create-image input[name=image_name]", "console-made-image")
    page.click("#create-image button")
    assert "/images/ami-" in page.url
    expect(page.locator("#facts .state")).to_have_attribute(
        "data-state", "available", timeout=120_000)
    page.goto(server.endpoint + f"/console/{REGION}/instances/{instance}")
    page.click("form[action$='/start'] button")
    expect(page.locator("#state .state")).to_have_attribute(
        "data-state", "running", timeout=120_000)
    page.check("form[action$='/terminate'] input[name=confirm]")
    page.click("form[action$='/terminate'] button")
    assert instance in page.inner_text("#flash")
    ec2(alice).get_waiter("instance_terminated").wait(InstanceIds=[instance],
                                                     WaiterConfig=FAST_WAITER)
    ctx.close()


def test_import_task_page(browser, tmp_path, request, shots):
    """Import an image from the import directory on the tasks page and watch the task to
    its image; a missing file is refused in words."""
    from conftest import Server
    imports = tmp_path / "imports"
    (imports / "bucket").mkdir(parents=True)
    srv = Server(tmp_path / "data", ["--import-dir", str(imports)])
    try:
        creds = srv.create_account("console-import")
        ctx, page = signed_in(browser, srv, creds)
        page.goto(srv.endpoint + f"/console/{REGION}/tasks")
        page.fill("#import input[name=source]", "s3://bucket/missing.raw")
        page.click("#import button")
        assert page.inner_text("#flash") == \
            "InvalidParameter: The object s3://bucket/missing.raw does not exist"
        assert page.locator("#tasks tbody tr").count() == 0
        guest = request.getfixturevalue("guest_raw")
        shutil.copy(guest, imports / "bucket" / "guest.raw")
        page.fill("#import input[name=source]", "s3://bucket/guest.raw")
        page.fill("#import input[name=description]", "console import")
        page.click("#import button")
        task = re.search(r"import-ami-[0-9a-f]+", page.inner_text("#flash")).group(0)
        # The live region follows the task until it completes.
        expect(page.locator(f"tr[id='{task}'] .state")).to_have_attribute(
            "data-state", "completed", timeout=120_000)
        shots(page, "tasks")
        page.click(f"tr[id='{task}'] a[href*='/images/ami-']")
        assert page.inner_text("#image-id").startswith("ami-")
        ctx.close()
    finally:
        assert srv.stop() == 0


def test_catalog_pages(server, browser, alice, tmp_path):
    """120 Quick Start images of one family: pages of 50 by id (the engine's NextToken),
    by search and newest first (offsets) each show every image exactly once."""
    images = [al2023(ami(), f"2024.{i:04d}", f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z",
                     family="console-paging") for i in range(120)]
    status, _, stderr = run_import(server, images, tmp_path=tmp_path)
    assert status == 0, stderr
    want = {i["ImageId"] for i in images}
    ctx, page = signed_in(browser, server, alice)
    # Without a search: the engine's pages (NextToken = the last id), over every Quick
    # Start image of the server.
    page.goto(server.endpoint + f"/console/{REGION}/images?tab=quickstart")
    seen = []
    while True:
        ids = [re.search(r"ami-[0-9a-f]{17}", t).group(0)
               for t in page.locator("#images tbody tr").all_inner_texts()]
        seen += ids
        if page.locator("#next-page").count() == 0:
            break
        assert len(ids) == 50 and "next=ami-" in page.get_attribute("#next-page", "href")
        page.click("#next-page")
    assert len(seen) == len(set(seen)) and want <= set(seen) and seen == sorted(seen)
    for query, ordered in [("tab=quickstart&q=console-paging", False),
                           ("tab=quickstart&q=console-paging&sort=newest", True)]:
        page.goto(server.endpoint + f"/console/{REGION}/images?{query}")
        seen, sizes = [], []
        while True:
            ids = [re.search(r"ami-[0-9a-f]{17}", t).group(0)
                   for t in page.locator("#images tbody tr").all_inner_texts()]
            seen += ids
            sizes.append(len(ids))
            if page.locator("#next-page").count() == 0:
                break
            page.click("#next-page")
        assert sizes == [50, 50, 20], query
        assert set(seen) == want and len(seen) == 120
        if ordered:
            created = {i["ImageId"]: i["CreationDate"] for i in images}
            assert [created[i] for i in seen] == sorted(created.values(), reverse=True)
    ctx.close()


def test_cookies_are_secure_behind_tls(browser, pki, tmp_path):
    from conftest import Server
    srv = Server(tmp_path / "data", tls=(pki / "server.pem", pki / "server.key", pki / "ca.pem"))
    try:
        creds = srv.create_account("console-tls")
        ctx = browser.new_context(ignore_https_errors=True)
        page = ctx.new_page()
        page.goto(srv.endpoint + "/console/signin")
        page.fill("input[name=access_key_id]", creds["AccessKeyId"])
        page.fill("input[name=secret_access_key]", creds["SecretAccessKey"])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/console/[a-z0-9-]+$"))
        cookie = next(c for c in ctx.cookies() if c["name"] == "openami_console")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        ctx.close()
    finally:
        assert srv.stop() == 0


def test_failed_launch_shows_the_error_and_keeps_no_key(server, browser, alice, ec2):
    image = own_image(ec2, alice, "console-bad-launch-image")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/launch?image={image}")
    # An instance type the engine does not know (the page only offers known ones).
    page.evaluate("""() => { const o = document.createElement('option');
        o.value = 't9.bogus'; o.textContent = 't9.bogus';
        document.querySelector('#launch select[name=type]').append(o); }""")
    page.select_option("#launch select[name=type]", "t9.bogus")
    page.fill("#launch input[name=new_key]", "console-unused-key")
    page.click("#launch button[type=submit]")
    flash = page.inner_text("#flash")
    assert flash.startswith("InvalidParameterValue") and "t9.bogus" in flash, flash
    names = [k["KeyName"] for k in ec2(alice).describe_key_pairs()["KeyPairs"]]
    assert "console-unused-key" not in names
    ctx.close()

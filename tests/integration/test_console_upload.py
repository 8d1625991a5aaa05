"""The web console's disk image upload and snapshot download, in a real headless Chromium
against the real binary: a qcow2 uploaded with the page's progress bar becomes a snapshot
(ImportSnapshot) whose download is the disk's raw bytes; the test guest uploaded as qcow2
becomes an image that boots; the plain form works without JavaScript; hostile files are
refused in words; another account cannot download; an upload without the CSRF token is
refused and leaves nothing staged; staging files are deleted at server start.

Screenshots land in the test's temp dir (`console-shots/`)."""

import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import FAST_WAITER, Server
from test_console import HAVE_QEMU, REGION, browser, shots, signed_in  # noqa: F401 (fixtures)
from test_instances import guest_image, guest_raw  # noqa: F401 (fixtures)

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

QEMU_IMG = shutil.which("qemu-img")
MIB = 1 << 20


def need_qemu_img():
    if QEMU_IMG is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is missing (scripts/install-vm-deps)")
        pytest.skip("qemu-img is missing (apt-get install qemu-utils)")


def small_raw(path: Path) -> bytes:
    """A 4 MiB raw disk: a pattern, a hole of zeros, random bytes, a tail mark."""
    data = bytearray(4 * MIB)
    data[0:MIB] = bytes(range(256)) * (MIB // 256)
    data[2 * MIB:3 * MIB] = os.urandom(MIB)
    data[-512:] = b"openami-upload-tail".ljust(512, b"!")
    path.write_bytes(bytes(data))
    return bytes(data)


def qcow2_of(raw: Path, out: Path) -> Path:
    subprocess.run([QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    return out


def staged(server):
    """The staging files left on the server."""
    uploads = server.data_dir / "transfers" / "uploads"
    return list(uploads.iterdir()) if uploads.exists() else []


def cookie_header(ctx) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in ctx.cookies())


def download(server, ctx, snap):
    """GET the download URL with the context's cookies: (status, headers, body iterator)."""
    req = urllib.request.Request(
        server.endpoint + f"/console/{REGION}/snapshots/{snap}/download",
        headers={"Cookie": cookie_header(ctx)})
    try:
        r = urllib.request.urlopen(req, timeout=120)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, iter([e.read()])

    def chunks():
        with r:
            while True:
                b = r.read(4 * MIB)
                if not b:
                    return
                yield b
    return r.status, r.headers, chunks()


def upload_with_progress(page, path: Path, kind="snapshot", description=""):
    """Uploads `path` on the tasks page with the script's progress bar; returns the
    percentages the bar showed and the flash message of the tasks page that follows."""
    # Every value the bar shows is kept in sessionStorage, which outlives the navigation
    # to the tasks page that follows the upload.
    page.evaluate("""() => {
        sessionStorage.setItem('seen', '');
        const bar = document.getElementById('upload-progress');
        new MutationObserver(() => sessionStorage.setItem('seen',
            sessionStorage.getItem('seen') + ' ' + bar.getAttribute('data-percent')))
          .observe(bar, {attributes: true, attributeFilter: ['data-percent']});
    }""")
    page.select_option("#upload-form select[name=kind]", kind)
    page.fill("#upload-form input[name=description]", description)
    page.set_input_files("#upload-form input[type=file]", str(path))
    with page.expect_navigation(timeout=120_000):
        page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#flash")
    seen = [int(p) for p in page.evaluate("sessionStorage.getItem('seen')").split()]
    return seen, page.inner_text("#flash")


def task_row(page, task, state):
    expect(page.locator(f"tr[id='{task}'] .state")).to_have_attribute(
        "data-state", state, timeout=120_000)
    return page.locator(f"tr[id='{task}']").inner_text()


def test_upload_qcow2_to_snapshot_and_download_it(server, browser, alice, bob, ec2, shots,
                                                  tmp_path):
    need_qemu_img()
    raw = small_raw(tmp_path / "disk.raw")
    qcow = qcow2_of(tmp_path / "disk.raw", tmp_path / "disk.qcow2")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/tasks")
    shots(page, "upload-form")
    seen, flash = upload_with_progress(page, qcow, description="console upload")
    assert seen and seen[-1] == 100, seen
    assert f"Uploaded disk.qcow2 ({qcow.stat().st_size} bytes)" in flash, flash
    task = re.search(r"import-snap-[0-9a-f]+", flash).group(0)
    row = task_row(page, task, "completed")
    snap = re.search(r"(?<![\w-])snap-[0-9a-f]{17}", row).group(0)
    shots(page, "upload-done")
    # The same task through the API, and its snapshot.
    c = ec2(alice)
    t = c.describe_import_snapshot_tasks(ImportTaskIds=[task])["ImportSnapshotTasks"][0]
    detail = t["SnapshotTaskDetail"]
    assert detail["Status"] == "completed" and detail["SnapshotId"] == snap
    assert detail.get("Format") in ("QCOW2", None)
    s = c.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]
    assert s["State"] == "completed" and s["VolumeSize"] == 1
    # Nothing stays staged once the task ended.
    assert not staged(server)

    # The download is the whole 1 GiB disk: the raw file's bytes, then zeros.
    page.goto(server.endpoint + f"/console/{REGION}/snapshots")
    link = page.locator(f"tr[id='{snap}'] a.download")
    assert link.get_attribute("href").endswith(f"/snapshots/{snap}/download")
    status, headers, body = download(server, ctx, snap)
    assert status == 200
    assert headers["Content-Length"] == str(1 << 30)
    assert headers["Content-Disposition"] == f'attachment; filename="{snap}.raw"'
    got, total, zero = bytearray(), 0, bytes(4 * MIB)
    for chunk in body:
        if total < len(raw):
            got += chunk
        else:
            assert chunk == zero[:len(chunk)]
        total += len(chunk)
    assert total == 1 << 30
    assert bytes(got[:len(raw)]) == raw
    assert not any(got[len(raw):])

    # Bob may not download it, nor can a visitor without a session.
    bctx, bpage = signed_in(browser, server, bob)
    status, _, body = download(server, bctx, snap)
    assert status == 404 and b"InvalidSnapshot.NotFound" in b"".join(body)
    anon = urllib.request.Request(
        server.endpoint + f"/console/{REGION}/snapshots/{snap}/download")
    with urllib.request.urlopen(anon, timeout=30) as r:  # redirected to sign in
        assert r.url.endswith("/console/signin")
    # Shared with him, he may.
    c.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                OperationType="add", UserIds=[bob["AccountId"]])
    status, headers, body = download(server, bctx, snap)
    assert status == 200 and next(body)[:MIB] == raw[:MIB]
    bctx.close()
    ctx.close()


def test_uploaded_guest_image_boots(server, browser, alice, ec2, shots, tmp_path, request):
    """The test guest as qcow2, uploaded as an image (ImportImage), launches and runs."""
    need_qemu_img()
    if not HAVE_QEMU:
        pytest.skip("qemu-system-x86_64 is missing")
    guest = request.getfixturevalue("guest_raw")
    qcow = qcow2_of(guest, tmp_path / "guest.qcow2")
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/tasks")
    seen, flash = upload_with_progress(page, qcow, kind="image", description="uploaded guest")
    assert seen and seen[-1] == 100, seen
    task = re.search(r"import-ami-[0-9a-f]+", flash).group(0)
    row = task_row(page, task, "completed")
    image = re.search(r"(?<![\w-])ami-[0-9a-f]{17}", row).group(0)
    c = ec2(alice)
    t = c.describe_import_image_tasks(ImportTaskIds=[task])["ImportImageTasks"][0]
    assert t["Status"] == "completed" and t["ImageId"] == image
    assert c.describe_images(ImageIds=[image])["Images"][0]["State"] == "available"
    shots(page, "upload-image-done")
    inst = c.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                           UserData="#!/bin/sh\necho uploaded-guest-up\n"
                           )["Instances"][0]["InstanceId"]
    try:
        c.get_waiter("instance_running").wait(InstanceIds=[inst], WaiterConfig=FAST_WAITER)
        page.goto(server.endpoint + f"/console/{REGION}/instances/{inst}")
        expect(page.locator("#state .state")).to_have_attribute("data-state", "running",
                                                                timeout=60_000)
        # The guest really booted from the uploaded disk: it ran its user data.
        out = ""
        for _ in range(180):
            out = c.get_console_output(InstanceId=inst).get("Output", "")
            if "uploaded-guest-up" in out:
                break
            page.wait_for_timeout(1000)
        assert "uploaded-guest-up" in out, out[-2000:]
        shots(page, "upload-image-instance")
    finally:
        c.terminate_instances(InstanceIds=[inst])
        c.get_waiter("instance_terminated").wait(InstanceIds=[inst], WaiterConfig=FAST_WAITER)
    ctx.close()


def test_plain_form_without_javascript(server, browser, alice, ec2, tmp_path):
    raw = small_raw(tmp_path / "plain.raw")
    ctx = browser.new_context(java_script_enabled=False)
    ctx.add_cookies(signed_in_cookies(browser, server, alice))
    page = ctx.new_page()
    page.goto(server.endpoint + f"/console/{REGION}/tasks")
    page.set_input_files("#upload-form input[type=file]", str(tmp_path / "plain.raw"))
    page.click("#upload-form button[type=submit]")
    flash = page.inner_text("#flash")
    assert f"Uploaded plain.raw ({len(raw)} bytes)" in flash, flash
    task = re.search(r"import-snap-[0-9a-f]+", flash).group(0)
    for _ in range(120):
        t = ec2(alice).describe_import_snapshot_tasks(
            ImportTaskIds=[task])["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
        if t["Status"] != "active":
            break
        page.wait_for_timeout(500)
    assert t["Status"] == "completed", t
    # An empty submission is refused in words.
    page.goto(server.endpoint + f"/console/{REGION}/tasks")
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    page.set_input_files("#upload-form input[type=file]", str(empty))
    page.click("#upload-form button[type=submit]")
    assert "empty.raw is empty" in page.inner_text("#flash")
    ctx.close()


def signed_in_cookies(browser, server, creds):
    ctx, _ = signed_in(browser, server, creds)
    cookies = ctx.cookies()
    ctx.close()
    return cookies


def test_hostile_files_are_refused_in_words(server, browser, alice, shots, tmp_path):
    need_qemu_img()
    backed = tmp_path / "backed.qcow2"
    subprocess.run([QEMU_IMG, "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname",
                    "-u", str(backed), "8M"], check=True, stdout=subprocess.DEVNULL)
    truncated = tmp_path / "truncated.qcow2"
    truncated.write_bytes(qcow2_of(small_and_raw(tmp_path), tmp_path / "t.qcow2")
                          .read_bytes()[:200])
    base = tmp_path / "base.vmdk"
    subprocess.run([QEMU_IMG, "create", "-f", "vmdk", str(base), "8M"], check=True,
                   stdout=subprocess.DEVNULL)
    vmdk = tmp_path / "pointer.vmdk"
    subprocess.run([QEMU_IMG, "create", "-f", "vmdk", "-F", "vmdk", "-b", str(base), "-u",
                    str(vmdk), "8M"], check=True, stdout=subprocess.DEVNULL)
    ctx, page = signed_in(browser, server, alice)
    for path, words in [(backed, "backing file"), (truncated, "refused"),
                        (vmdk, "parent")]:
        page.goto(server.endpoint + f"/console/{REGION}/tasks")
        _, flash = upload_with_progress(page, path)
        task = re.search(r"import-snap-[0-9a-f]+", flash).group(0)
        row = task_row(page, task, "error")
        message = page.locator(f"tr[id='{task}'] td").nth(4).inner_text()
        assert message.startswith("ClientError: ") and words in message, message
        assert f"the uploaded file {path.name}" in message, message
        # The server's directories are never named.
        assert str(server.data_dir) not in row
        shots(page, f"upload-refused-{path.stem}")
    assert not staged(server)
    ctx.close()


def small_and_raw(tmp_path):
    small_raw(tmp_path / "small.raw")
    return tmp_path / "small.raw"


def test_upload_without_csrf_token_is_refused(server, browser, alice, ec2, tmp_path):
    ctx, page = signed_in(browser, server, alice)
    page.goto(server.endpoint + f"/console/{REGION}/tasks")
    token = page.get_attribute("#upload-form input[name=csrf]", "value")
    url = server.endpoint + f"/console/{REGION}/upload"
    before = len(ec2(alice).describe_import_snapshot_tasks()["ImportSnapshotTasks"])
    file = {"name": "x.raw", "mimeType": "application/octet-stream", "buffer": bytes(MIB)}
    for fields, headers in [({"file": file}, {}),
                            ({"csrf": "", "file": file}, {}),
                            ({"csrf": "0" * 64, "file": file}, {}),
                            ({"file": file}, {"X-CSRF-Token": token[:-1] + "x"}),
                            ({"csrf": token[:-1] + "x", "file": file}, {})]:
        r = page.request.post(url, multipart=fields, headers=headers, max_redirects=0)
        assert r.status == 403, (fields.keys(), headers)
    after = len(ec2(alice).describe_import_snapshot_tasks()["ImportSnapshotTasks"])
    assert after == before
    assert not staged(server)
    # The same request with the token (as a field, or as the script's header) works.
    r = page.request.post(url, multipart={"csrf": token, "file": file}, max_redirects=0)
    assert r.status == 303
    r = page.request.post(url, multipart={"file": file}, headers={"X-CSRF-Token": token})
    assert r.status == 200 and r.text() == f"/console/{REGION}/tasks"
    ctx.close()


def test_upload_larger_than_the_limit_is_refused(browser, tmp_path):
    """With --console-max-upload-mib 1: a larger file is refused in words, with the script
    and without, and nothing stays staged; a file within the limit is imported."""
    srv = Server(tmp_path / "data", ["--console-max-upload-mib", "1"])
    try:
        creds = srv.create_account("upload-limit")
        big = tmp_path / "big.raw"
        big.write_bytes(b"\x01" * (MIB + MIB // 2))
        ctx, page = signed_in(browser, srv, creds)
        page.goto(srv.endpoint + f"/console/{REGION}/tasks")
        assert "at most 1 MiB" in page.inner_text("#upload")
        page.set_input_files("#upload-form input[type=file]", str(big))
        page.click("#upload-form button[type=submit]")
        status = page.locator("#upload-status")
        expect(status).to_have_attribute("data-state", "failed", timeout=30_000)
        assert status.inner_text() == \
            "UploadTooLarge: The file is larger than the upload limit of 1 MiB."
        assert page.locator("#tasks tbody tr").count() == 0
        assert not staged(srv)
        # Without the script: the tasks page says the same.
        token = page.get_attribute("#upload-form input[name=csrf]", "value")
        r = page.request.post(srv.endpoint + f"/console/{REGION}/upload", max_redirects=0,
                              multipart={"csrf": token, "file": {
                                  "name": "big.raw", "mimeType": "application/octet-stream",
                                  "buffer": big.read_bytes()}})
        assert r.status == 303
        page.goto(srv.endpoint + f"/console/{REGION}/tasks")
        assert "larger than the upload limit of 1 MiB" in page.inner_text("#flash")
        assert not staged(srv)
        ok = tmp_path / "ok.raw"
        ok.write_bytes(b"\x02" * (MIB // 2))
        seen, flash = upload_with_progress(page, ok)
        assert f"Uploaded ok.raw ({MIB // 2} bytes)" in flash
        ctx.close()
    finally:
        assert srv.stop() == 0


def test_staging_files_are_deleted_at_start(tmp_path):
    srv = Server(tmp_path / "data")
    assert srv.stop() == 0
    uploads = tmp_path / "data" / "transfers" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    left = uploads / ("upload-" + "ab" * 16 + ".part")
    left.write_bytes(b"left by a crash")
    srv = Server(tmp_path / "data")
    try:
        assert not left.exists()
    finally:
        assert srv.stop() == 0

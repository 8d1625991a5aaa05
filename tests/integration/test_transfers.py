"""VM import/export through boto3: ImportImage, ImportSnapshot, ExportImage, their task
descriptions and cancellation, hostile sources, restart safety, and the end-to-end path
upload → register → copy to another region → export as qcow2 → `qemu-img compare`.

openami maps S3 locations to files: `s3://BUCKET/KEY` is IMPORT_DIR/BUCKET/KEY, and an
export lands in EXPORT_DIR/BUCKET/PREFIX<task>.<format>.
"""

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import FAST_WAITER, Server, error_code, openami_bin

MIB = 1024 * 1024
BUCKET = "images"

needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None and os.environ.get("CI") != "true",
    reason="qemu-img is not installed",
)


def mixed_raw(path, mib=24, seed=7):
    """Random, zero and repeated regions, not block aligned at the end."""
    rnd = __import__("random").Random(seed)
    data = bytearray()
    while len(data) < mib * MIB:
        kind = rnd.randrange(3)
        n = rnd.randrange(64 * 1024, 2 * MIB)
        data += rnd.randbytes(n) if kind == 0 else bytes(n) if kind == 1 else (b"openami " * (n // 8))
    data = data[:mib * MIB + 12345]
    path.write_bytes(data)
    return bytes(data)


@pytest.fixture
def transfer_server(tmp_path):
    imports, exports = tmp_path / "imports", tmp_path / "exports"
    (imports / BUCKET).mkdir(parents=True)
    (exports / BUCKET).mkdir(parents=True)
    # URL imports from loopback (the local HTTP servers of these tests) are refused unless
    # allow-listed.
    srv = Server(tmp_path / "data", ["--import-dir", str(imports), "--export-dir", str(exports),
                                     "--import-url-allow", "127.0.0.1/32"])
    srv.imports, srv.exports = imports, exports
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def client(srv, creds, region="us-east-1"):
    return boto3.client("ec2", endpoint_url=srv.endpoint, region_name=region,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def wait_task(describe, key, task_id, states=("completed",), timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = describe(task_id)
        status = task["SnapshotTaskDetail"]["Status"] if key == "snapshot" else task["Status"]
        if status in states:
            return task
        assert status in ("active", "deleting", "completed", "deleted", "error"), task
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} did not reach {states}: {task}")


def image_task(ec2):
    return lambda t: ec2.describe_import_image_tasks(ImportTaskIds=[t])["ImportImageTasks"][0]


def snapshot_task(ec2):
    return lambda t: ec2.describe_import_snapshot_tasks(ImportTaskIds=[t])["ImportSnapshotTasks"][0]


def export_task(ec2):
    return lambda t: ec2.describe_export_image_tasks(ExportImageTaskIds=[t])["ExportImageTasks"][0]


def qemu_img(*args):
    out = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def download(srv, creds, snap, dest):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run([openami_bin(), "snapshot", "download", snap, str(dest), "--endpoint", srv.endpoint,
                          "--region", "us-east-1", "--no-progress"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@needs_qemu_img
def test_import_copy_export_round_trip(transfer_server, tmp_path):
    srv = transfer_server
    creds = srv.create_account("mover")
    ec2 = client(srv, creds)
    raw = tmp_path / "orig.raw"
    mixed_raw(raw)
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw),
             str(srv.imports / BUCKET / "disk.vmdk"))

    task = ec2.import_image(Description="round trip", Architecture="x86_64", Platform="Linux",
                            DiskContainers=[{"Format": "VMDK", "UserBucket": {"S3Bucket": BUCKET, "S3Key": "disk.vmdk"}}])
    assert task["ImportTaskId"].startswith("import-ami-") and task["Status"] == "active"
    done = wait_task(image_task(ec2), "image", task["ImportTaskId"])
    image_id = done["ImageId"]
    detail = done["SnapshotDetails"][0]
    assert detail["Format"] == "VMDK" and detail["Status"] == "completed"
    img = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert img["State"] == "available" and img["RootDeviceType"] == "ebs"
    assert img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == detail["SnapshotId"]

    # Copy to another region, export the copy as qcow2 there.
    west = client(srv, creds, "us-west-2")
    copy = west.copy_image(SourceImageId=image_id, SourceRegion="us-east-1", Name="copied")["ImageId"]
    west.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig=FAST_WAITER)
    exp = west.export_image(ImageId=copy, DiskImageFormat="QCOW2",
                            S3ExportLocation={"S3Bucket": BUCKET, "S3Prefix": "out/"})
    finished = wait_task(export_task(west), "export", exp["ExportImageTaskId"])
    assert finished["S3ExportLocation"] == {"S3Bucket": BUCKET, "S3Prefix": "out/"}
    exported = srv.exports / BUCKET / "out" / f"{exp['ExportImageTaskId']}.qcow2"
    qemu_img("check", str(exported))
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "qcow2", str(raw), str(exported))

    # The same image as VMDK and VHD, checked the same way.
    for fmt, qemu_fmt in (("VMDK", "vmdk"), ("VHD", "vpc")):
        e = ec2.export_image(ImageId=image_id, DiskImageFormat=fmt, S3ExportLocation={"S3Bucket": BUCKET})
        wait_task(export_task(ec2), "export", e["ExportImageTaskId"])
        path = srv.exports / BUCKET / f"{e['ExportImageTaskId']}.{fmt.lower()}"
        assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", qemu_fmt, str(raw), str(path))


@needs_qemu_img
def test_import_snapshot_formats_and_refusals(transfer_server, tmp_path):
    srv = transfer_server
    creds = srv.create_account("importer")
    ec2 = client(srv, creds)
    raw = tmp_path / "orig.raw"
    data = mixed_raw(raw, mib=12, seed=11)
    for fmt, qemu_fmt, opts in (("VHDX", "vhdx", []), ("VHD", "vpc", ["-o", "subformat=dynamic"]),
                                ("QCOW2", "qcow2", []), ("RAW", "raw", [])):
        name = f"disk.{qemu_fmt}"
        qemu_img("convert", "-f", "raw", "-O", qemu_fmt, *opts, str(raw), str(srv.imports / BUCKET / name))
        task = ec2.import_snapshot(Description=fmt, DiskContainer={
            "Format": fmt, "UserBucket": {"S3Bucket": BUCKET, "S3Key": name}})
        done = wait_task(snapshot_task(ec2), "snapshot", task["ImportTaskId"])
        snap = done["SnapshotTaskDetail"]["SnapshotId"]
        assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed"
        down = tmp_path / f"{qemu_fmt}.down"
        download(srv, creds, snap, down)
        with open(down, "rb") as f:
            assert f.read(len(data)) == data, fmt

    # The SDK waiter sees a hostile image fail.
    qemu_img("create", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(srv.imports / BUCKET / "overlay.qcow2"))
    bad = ec2.import_snapshot(DiskContainer={"UserBucket": {"S3Bucket": BUCKET, "S3Key": "overlay.qcow2"}})
    failed = wait_task(snapshot_task(ec2), "snapshot", bad["ImportTaskId"], states=("error",))
    assert "backing" in failed["SnapshotTaskDetail"]["StatusMessage"].lower()
    # A format that does not match the file.
    wrong = ec2.import_snapshot(DiskContainer={"Format": "VMDK", "UserBucket": {"S3Bucket": BUCKET, "S3Key": "disk.vhdx"}})
    wait_task(snapshot_task(ec2), "snapshot", wrong["ImportTaskId"], states=("error",))

    # Sources outside the import directory are refused at once.
    outside = tmp_path / "secret.raw"
    outside.write_bytes(b"x" * 4096)
    os.symlink(outside, srv.imports / BUCKET / "link.raw")
    for bucket, key in ((BUCKET, "../../secret.raw"), (BUCKET, "/etc/passwd"), ("..", "secret.raw"),
                        (BUCKET, "link.raw"), (BUCKET, "missing.raw")):
        with pytest.raises(ClientError) as e:
            ec2.import_snapshot(DiskContainer={"UserBucket": {"S3Bucket": bucket, "S3Key": key}})
        assert error_code(e.value) == "InvalidParameter", (bucket, key)
    with pytest.raises(ClientError) as e:
        ec2.import_snapshot(DiskContainer={"Url": "file:///etc/passwd"})
    assert error_code(e.value) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        ec2.export_image(ImageId="ami-0123456789abcdef0", DiskImageFormat="VMDK", S3ExportLocation={"S3Bucket": BUCKET})
    assert error_code(e.value) == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.describe_import_snapshot_tasks(ImportTaskIds=["import-snap-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidConversionTaskId.NotFound"


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves `payload` at ~`rate` bytes/s, so a task stays in its download phase."""
    payload = b""
    rate = MIB

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        step = 64 * 1024
        try:
            for i in range(0, len(self.payload), step):
                self.wfile.write(self.payload[i:i + step])
                time.sleep(step / self.rate)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_http(tmp_path):
    data = mixed_raw(tmp_path / "served.raw", mib=6, seed=3)
    SlowHandler.payload = data
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/disk.raw", data
    httpd.shutdown()


def test_cancel_and_restart_of_http_imports(transfer_server, slow_http, tmp_path):
    srv = transfer_server
    creds = srv.create_account("http-importer")
    ec2 = client(srv, creds)
    url, data = slow_http

    task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": url})["ImportTaskId"]
    time.sleep(1)
    cancel = ec2.cancel_import_task(ImportTaskId=task)
    assert cancel["PreviousState"] == "active" and cancel["State"] == "deleting"
    gone = wait_task(snapshot_task(ec2), "snapshot", task, states=("deleted",))
    assert "SnapshotId" not in gone["SnapshotTaskDetail"]
    with pytest.raises(ClientError) as e:
        ec2.cancel_import_task(ImportTaskId=task)
    assert error_code(e.value) == "IncorrectState"

    # SIGKILL while a download is under way: after the restart the task starts over and
    # completes with the right bytes.
    token = uuid.uuid4().hex
    task = ec2.import_snapshot(ClientToken=token, DiskContainer={"Format": "RAW", "Url": url})["ImportTaskId"]
    time.sleep(1.5)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv.log.close()
    again = Server(srv.data_dir, srv.extra_args, port=srv.port)
    srv.proc, srv.log = again.proc, again.log
    done = wait_task(snapshot_task(ec2), "snapshot", task)
    assert ec2.import_snapshot(ClientToken=token, DiskContainer={"Format": "RAW", "Url": url})["ImportTaskId"] == task
    down = tmp_path / "http.down"
    download(srv, creds, done["SnapshotTaskDetail"]["SnapshotId"], down)
    with open(down, "rb") as f:
        assert f.read(len(data)) == data


@needs_qemu_img
def test_uploaded_vhdx_registered_copied_and_exported(transfer_server, tmp_path):
    """The issue's end-to-end path through public interfaces: `openami snapshot upload`
    of a VHDX (EBS direct API) → RegisterImage → CopyImage to another region →
    ExportImage as qcow2 → `qemu-img compare` with the original bytes."""
    srv = transfer_server
    creds = srv.create_account("uploader")
    ec2 = client(srv, creds)
    raw = tmp_path / "orig.raw"
    mixed_raw(raw, mib=16, seed=5)
    vhdx = tmp_path / "disk.vhdx"
    qemu_img("convert", "-f", "raw", "-O", "vhdx", str(raw), str(vhdx))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    up = subprocess.run([openami_bin(), "snapshot", "upload", str(vhdx), "--endpoint", srv.endpoint,
                         "--region", "us-east-1", "--no-progress"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    snap = up.stdout.strip()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST_WAITER)
    image = ec2.register_image(Name="uploaded", RootDeviceName="/dev/xvda", Architecture="x86_64",
                               BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    west = client(srv, creds, "eu-west-1")
    copy = west.copy_image(SourceImageId=image, SourceRegion="us-east-1", Name="uploaded-copy")["ImageId"]
    west.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig=FAST_WAITER)
    exp = west.export_image(ImageId=copy, DiskImageFormat="QCOW2", S3ExportLocation={"S3Bucket": BUCKET})
    wait_task(export_task(west), "export", exp["ExportImageTaskId"])
    exported = srv.exports / BUCKET / f"{exp['ExportImageTaskId']}.qcow2"
    qemu_img("check", str(exported))
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "qcow2", str(raw), str(exported))

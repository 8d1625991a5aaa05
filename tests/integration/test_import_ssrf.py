"""Server-side request forgery through URL imports, tried with boto3 against real local
HTTP servers on 127.0.0.1.

By default an ImportSnapshot/ImportImage `Url` naming an internal address (loopback,
link-local, private, …) is refused at once with `InvalidParameter`, before anything is
sent: the local HTTP servers' request logs prove it. `serve --import-url-allow` opens
exactly what it names; redirects are checked again. Non-loopback ranges are only ever
named in URLs that must be refused before any connection: no test sends traffic outside
127.0.0.0/8.

Error messages name the client's own locations (s3://bucket/key), never the server's
directories.
"""

import http.server
import os
import random
import shutil
import subprocess
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Server, error_code, openami_bin

MIB = 1024 * 1024
BUCKET = "images"


def client(srv, creds):
    return boto3.client("ec2", endpoint_url=srv.endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


class DiskServer:
    """A real HTTP server on `host`: `/disk.raw` answers the disk, `/to?<url>` redirects
    there, `/loop` redirects to itself, and every request path is logged."""

    def __init__(self, host, payload):
        self.requests = []
        log, data = self.requests, payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                log.append(self.path)
                if self.path.startswith("/to?"):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/to?"):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/loop":
                    self.send_response(301)
                    self.send_header("Location", "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/disk.raw":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def disk():
    rnd = random.Random(17)
    return rnd.randbytes(MIB) + bytes(MIB) + b"openami ssrf " * 1000


@pytest.fixture
def web(disk):
    srv = DiskServer("127.0.0.1", disk)
    yield srv
    srv.close()


def start(tmp_path, name, args=()):
    base = tmp_path / name
    base.mkdir()
    (base / "imports" / BUCKET).mkdir(parents=True)
    srv = Server(base / "data", ["--import-dir", str(base / "imports"), *args])
    srv.imports = base / "imports"
    return srv


@pytest.fixture
def default_server(tmp_path):
    srv = start(tmp_path, "default")
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def allow_server(tmp_path):
    srv = start(tmp_path, "allow", ["--import-url-allow", "127.0.0.1/32"])
    yield srv
    assert srv.stop() == 0


def wait_snapshot_task(ec2, task_id, states=("completed",), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        detail = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"][0][
            "SnapshotTaskDetail"]
        if detail["Status"] in states:
            return detail
        assert detail["Status"] == "active", detail
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} did not reach {states}")


def refused(ec2, url, image=False):
    with pytest.raises(ClientError) as e:
        if image:
            ec2.import_image(DiskContainers=[{"Format": "RAW", "Url": url}])
        else:
            ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": url})
    assert error_code(e.value) == "InvalidParameter", (url, e.value.response)
    return e.value.response["Error"]["Message"]


def downloaded(srv, creds, snap, dest):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run([openami_bin(), "snapshot", "download", snap, str(dest), "--endpoint", srv.endpoint,
                          "--region", "us-east-1", "--no-progress"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dest.read_bytes()


def test_loopback_is_refused_by_default_and_never_contacted(default_server, web):
    ec2 = client(default_server, default_server.create_account("ssrf-default"))
    port = web.port
    msg = refused(ec2, f"{web.base}/disk.raw")
    assert "127.0.0.1, a loopback address" in msg and "--import-url-allow" in msg, msg
    # A host name resolving to loopback, and other spellings of loopback.
    msg = refused(ec2, f"http://localhost:{port}/disk.raw")
    assert "localhost resolves to" in msg and "loopback" in msg, msg
    for url in (f"http://127.1:{port}/disk.raw", f"http://2130706433:{port}/disk.raw",
                f"http://[::ffff:127.0.0.1]:{port}/disk.raw", f"http://[::1]:{port}/disk.raw",
                f"http://127.0.0.1:{port}/to?http://example.com/"):
        assert "loopback" in refused(ec2, url), url
    assert "loopback" in refused(ec2, f"{web.base}/disk.raw", image=True)
    # No task was created, and the web server never saw a request.
    assert ec2.describe_import_snapshot_tasks()["ImportSnapshotTasks"] == []
    assert ec2.describe_import_image_tasks()["ImportImageTasks"] == []
    assert web.requests == []


def test_internal_ranges_are_refused_before_connecting(default_server):
    """Each URL must be refused synchronously: the check runs before any connection."""
    ec2 = client(default_server, default_server.create_account("ssrf-ranges"))
    cases = {
        "http://10.1.2.3/disk.raw": "10.1.2.3, a private address",
        "http://172.16.5.4/disk.raw": "a private address",
        "http://192.168.0.1/disk.raw": "a private address",
        "http://169.254.169.254/latest/meta-data/": "a link-local address",
        "http://[::ffff:169.254.169.254]/latest/meta-data/": "a link-local address",
        "http://100.64.0.1/disk.raw": "carrier-grade NAT",
        "http://0.0.0.0/disk.raw": "an unspecified address",
        "http://[::]/disk.raw": "an unspecified address",
        "http://224.0.0.1/disk.raw": "a multicast address",
        "http://255.255.255.255/disk.raw": "a broadcast address",
        "http://[fe80::1]/disk.raw": "a link-local address",
        "http://[fd00::1]/disk.raw": "unique local",
        "http://192.0.2.1/disk.raw": "a documentation address",
        "https://[::ffff:10.0.0.1]:8443/disk.raw": "a private address",
    }
    for url, why in cases.items():
        msg = refused(ec2, url)
        assert why in msg and "imports from internal addresses are refused" in msg, (url, msg)
    for url, why in {"ftp://example.com/disk.raw": "http(s) URL",
                     "http://user:pw@example.com/disk.raw": "user information"}.items():
        assert why in refused(ec2, url), url
    assert ec2.describe_import_snapshot_tasks()["ImportSnapshotTasks"] == []


def test_allow_listed_loopback_is_fetched(allow_server, web, disk, tmp_path):
    srv = allow_server
    creds = srv.create_account("ssrf-allowed")
    ec2 = client(srv, creds)
    task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": f"{web.base}/disk.raw"})["ImportTaskId"]
    done = wait_snapshot_task(ec2, task)
    assert web.requests == ["/disk.raw"]
    got = downloaded(srv, creds, done["SnapshotId"], tmp_path / "fetched.raw")
    assert got[:len(disk)] == disk
    # A redirect within what is allowed is followed.
    web.requests.clear()
    task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": f"{web.base}/to?{web.base}/disk.raw"})
    wait_snapshot_task(ec2, task["ImportTaskId"])
    assert web.requests == [f"/to?{web.base}/disk.raw", "/disk.raw"]
    # 127.0.0.1/32 opens 127.0.0.1 only; localhost is a name the list does not hold, and
    # this server's own listener stays refused.
    assert "127.0.0.2, a loopback address" in refused(ec2, f"http://127.0.0.2:{web.port}/disk.raw")
    assert "own listener" in refused(ec2, f"{srv.endpoint}/health")
    assert "private" in refused(ec2, "http://10.1.2.3/disk.raw")


def test_redirect_to_a_refused_address_is_refused(allow_server, disk):
    """127.0.0.1 is allowed, 127.0.0.2 is not: a redirect from one to the other fails
    the task, and the second server is never contacted."""
    ec2 = client(allow_server, allow_server.create_account("ssrf-redirect"))
    first, second = DiskServer("127.0.0.1", disk), DiskServer("127.0.0.2", disk)
    try:
        target = f"{second.base}/disk.raw"
        task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": f"{first.base}/to?{target}"})
        failed = wait_snapshot_task(ec2, task["ImportTaskId"], states=("error",))
        msg = failed["StatusMessage"]
        assert f"redirects to {target}, which is refused" in msg and "a loopback address" in msg, msg
        assert first.requests == [f"/to?{target}"]
        assert second.requests == []
        assert "SnapshotId" not in failed or not failed["SnapshotId"]
        # A redirect to this server's own listener is refused too.
        own = f"{first.base}/to?{allow_server.endpoint}/health"
        task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": own})
        msg = wait_snapshot_task(ec2, task["ImportTaskId"], states=("error",))["StatusMessage"]
        assert "own listener" in msg, msg
        # A redirect loop ends after 10 redirects.
        first.requests.clear()
        task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": f"{first.base}/loop"})
        msg = wait_snapshot_task(ec2, task["ImportTaskId"], states=("error",))["StatusMessage"]
        assert "more than 10 redirects" in msg, msg
        assert first.requests == ["/loop"] * 11
    finally:
        first.close()
        second.close()


def test_host_name_allow_list_opens_that_name(tmp_path, web, disk, monkeypatch):
    monkeypatch.setenv("OPENAMI_IMPORT_URL_ALLOW", "localhost")
    srv = start(tmp_path, "named")
    try:
        ec2 = client(srv, srv.create_account("ssrf-named"))
        url = f"http://localhost:{web.port}/disk.raw"
        task = ec2.import_snapshot(DiskContainer={"Format": "RAW", "Url": url})["ImportTaskId"]
        wait_snapshot_task(ec2, task)
        assert web.requests == ["/disk.raw"]
        # The name is open, the addresses are not.
        assert "loopback" in refused(ec2, f"{web.base}/disk.raw")
    finally:
        assert srv.stop() == 0


def test_bad_allow_patterns_stop_the_server(tmp_path):
    out = subprocess.run([openami_bin(), "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                          "--import-url-allow", "10.0.0.0/40"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "10.0.0.0/40" in out.stderr


@pytest.mark.skipif(shutil.which("qemu-img") is None and os.environ.get("CI") != "true",
                    reason="qemu-img is not installed")
def test_refused_images_name_the_clients_key_not_server_paths(default_server, tmp_path):
    srv = default_server
    ec2 = client(srv, srv.create_account("ssrf-paths"))
    evil = srv.imports / BUCKET / "evil"
    evil.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(evil / "backing.qcow2"), "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(evil / "backing.qcow2"), "-F", "qcow2",
                    str(evil / "disk.qcow2")], check=True)
    task = ec2.import_snapshot(DiskContainer={"UserBucket": {"S3Bucket": BUCKET, "S3Key": "evil/disk.qcow2"}})
    msg = wait_snapshot_task(ec2, task["ImportTaskId"], states=("error",))["StatusMessage"]
    assert "backing" in msg, msg
    assert f"s3://{BUCKET}/evil/disk.qcow2" in msg, msg
    assert f"s3://{BUCKET}/evil/backing.qcow2" in msg, msg
    assert str(tmp_path) not in msg and str(tmp_path.resolve()) not in msg, msg
    assert "imports" not in msg, msg
    # Synchronous refusals do not name paths either.
    for key in ("missing.raw", "../../x"):
        with pytest.raises(ClientError) as e:
            ec2.import_snapshot(DiskContainer={"UserBucket": {"S3Bucket": BUCKET, "S3Key": key}})
        assert str(tmp_path) not in e.value.response["Error"]["Message"]

"""Limits: slow clients (headers one byte at a time, a body that stalls) are cut off after
--header-timeout / --body-timeout while others are served; idle keep-alive connections
close; --max-connections makes further connections wait; --rate-limit answers each
service's throttling error per account; --ebs-upload-concurrency throttles
PutSnapshotBlock per snapshot without losing a block. Each test runs its own server on
loopback."""

import os
import socket
import ssl
import threading
import time
import urllib.request

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import Server, error_code
from test_ebs import BLOCK, complete, put, read_all
from test_tls import pki  # noqa: F401 - the fixture

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def client(srv, creds, service, config=NO_RETRY):
    return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], config=config)


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(*extra):
        srv = Server(tmp_path / f"data{len(servers)}", extra_args=list(extra))
        servers.append(srv)
        return srv
    yield make
    for srv in servers:
        assert srv.stop() == 0, "openami did not exit cleanly on SIGTERM"


def health(srv, timeout=5):
    with urllib.request.urlopen(srv.endpoint + "/health", timeout=timeout) as r:
        return r.status


def connect(srv):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=30)


def wait_closed(sock, limit):
    """Reads until the server closes the connection; returns the bytes read and when."""
    sock.settimeout(limit)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    return got, time.monotonic()


def test_slowloris_is_cut_off_while_others_are_served(make_server):
    srv = make_server("--header-timeout", "2")
    sock = connect(srv)
    started = time.monotonic()
    stop = threading.Event()

    def trickle():
        # A request head that never ends, one byte every 0.3 s.
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
        for byte in head:
            if stop.is_set():
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.3)
    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        time.sleep(0.5)
        assert health(srv) == 200  # a normal client is served meanwhile
        got, closed = wait_closed(sock, 15)
        assert b"200 OK" not in got
        assert 1.5 <= closed - started <= 8, closed - started
    finally:
        stop.set()
        sender.join()
        sock.close()
    assert health(srv) == 200


def test_idle_keep_alive_connection_closes(make_server):
    srv = make_server("--header-timeout", "2")
    sock = connect(srv)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.settimeout(5)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    answered = time.monotonic()
    got, closed = wait_closed(sock, 15)
    assert got == b""
    assert 1.5 <= closed - answered <= 8, closed - answered
    sock.close()


def test_stalled_body_is_cut_off(make_server):
    srv = make_server("--header-timeout", "30", "--body-timeout", "2")
    sock = connect(srv)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 1000\r\n\r\nAction=Describe")
    started = time.monotonic()
    try:
        assert health(srv) == 200
        got, closed = wait_closed(sock, 20)
        # The request failed (its body never came) and the connection was closed.
        assert not got.startswith(b"HTTP/1.1 200"), got[:200]
        assert 1.5 <= closed - started <= 10, closed - started
    finally:
        sock.close()


def test_connection_cap_makes_extra_connections_wait(make_server):
    srv = make_server("--max-connections", "2", "--header-timeout", "30")
    held = [connect(srv), connect(srv)]
    time.sleep(0.5)
    result = {}

    def third():
        try:
            result["status"] = health(srv, timeout=20)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = repr(e)
        result["at"] = time.monotonic()
    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(2)
    assert not result, f"a third connection was served beyond the cap: {result}"
    released = time.monotonic()
    held.pop().close()
    waiter.join(timeout=20)
    assert result.get("status") == 200, result
    assert result["at"] - released < 5
    for s in held:
        s.close()
    assert health(srv) == 200


def test_rate_limit_per_account(make_server):
    srv = make_server("--rate-limit", "2", "--rate-burst", "4")
    alice = srv.create_account("alice")
    bob = srv.create_account("bob")
    ec2 = client(srv, alice, "ec2")
    outcomes = []
    for _ in range(12):
        try:
            ec2.describe_regions()
            outcomes.append("ok")
        except botocore.exceptions.ClientError as e:
            assert error_code(e) == "RequestLimitExceeded"
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            outcomes.append("throttled")
    assert outcomes[:4] == ["ok"] * 4, outcomes
    assert "throttled" in outcomes, outcomes
    # Another account has its own budget.
    client(srv, bob, "ec2").describe_regions()
    # SSM answers its own throttling error for the throttled account.
    ssm = client(srv, alice, "ssm")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        for _ in range(12):
            ssm.describe_parameters()
    assert error_code(e.value) == "ThrottlingException"
    # The query services answer Throttling.
    autoscaling = client(srv, alice, "autoscaling")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        for _ in range(12):
            autoscaling.describe_auto_scaling_groups()
    assert error_code(e.value) == "Throttling"
    # A second later the account has tokens again.
    time.sleep(1.2)
    ec2.describe_regions()
    # Unauthenticated floods do not spend the account's budget.
    time.sleep(2.5)
    forged = dict(alice, SecretAccessKey="x" * 40)
    bad = client(srv, forged, "ec2")
    for _ in range(10):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bad.describe_regions()
        assert error_code(e.value) != "RequestLimitExceeded"
    for _ in range(4):
        ec2.describe_regions()


def test_rate_limit_off_by_default(make_server):
    srv = make_server()
    ec2 = client(srv, srv.create_account("alice"), "ec2")
    for _ in range(30):
        ec2.describe_regions()


def test_ebs_upload_concurrency_cap(make_server):
    srv = make_server("--ebs-upload-concurrency", "1")
    creds = srv.create_account("uploader")
    ebs = client(srv, creds, "ebs", Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                          max_pool_connections=32))
    sid = ebs.start_snapshot(VolumeSize=1, Timeout=60)["SnapshotId"]
    blocks = {i * 7: os.urandom(BLOCK) for i in range(32)}
    throttled = []
    errors = []
    lock = threading.Lock()

    def upload(indexes):
        for index in indexes:
            for _ in range(500):
                try:
                    put(ebs, sid, index, blocks[index])
                    break
                except botocore.exceptions.ClientError as e:
                    with lock:
                        throttled.append((error_code(e), e.response["ResponseMetadata"]["HTTPStatusCode"],
                                          e.response.get("Reason")))
                    time.sleep(0.01)
            else:
                with lock:
                    errors.append(index)
    order = sorted(blocks)
    threads = [threading.Thread(target=upload, args=(order[n::16],)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert throttled, "16 concurrent uploads against a cap of 1 were never throttled"
    assert set(throttled) == {("RequestThrottledException", 400, "RESOURCE_LEVEL_THROTTLE")}, set(throttled)
    assert complete(ebs, sid, blocks)["Status"] in ("pending", "completed")
    ec2 = client(srv, creds, "ec2")
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert read_all(ebs, sid) == blocks


def test_slowloris_over_tls_is_cut_off(pki, tmp_path):  # noqa: F811 - the fixture
    srv = Server(tmp_path / "data", extra_args=["--header-timeout", "2"],
                 tls=(pki / "server.pem", pki / "server.key", pki / "ca.pem"))
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        sock = context.wrap_socket(connect(srv), server_hostname="localhost")
        started = time.monotonic()
        sock.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        with urllib.request.urlopen(srv.endpoint + "/health", timeout=5, context=context) as r:
            assert r.status == 200  # a normal client is served meanwhile
        closed = None
        for _ in range(40):
            try:
                sock.send(b"X")
            except OSError:
                closed = time.monotonic()
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(4096) == b"":
                    closed = time.monotonic()
                    break
            except (socket.timeout, ssl.SSLWantReadError):
                pass
            except (OSError, ssl.SSLError):
                closed = time.monotonic()
                break
        assert closed is not None, "the slow TLS client was never cut off"
        assert 1.5 <= closed - started <= 8, closed - started
        sock.close()
    finally:
        assert srv.stop() == 0

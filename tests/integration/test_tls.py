"""TLS on the listener: `openami serve --tls-cert --tls-key` serves the APIs over HTTPS.

A throwaway CA and a server certificate for 127.0.0.1 / localhost are made with the
`openssl` CLI; clients trust that CA explicitly (boto3 `verify=`, the AWS CLI
`--ca-bundle`, coldsnap through SSL_CERT_FILE) and fail verification without it. Plain
HTTP, stalled handshakes and bad certificate files are refused without harming the
server. Loopback only."""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import Server, openami_bin
from test_coldsnap import MIB, coldsnap_bin, make_image, same_prefix_then_zeros

SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem (a self-signed CA), server.pem (leaf + CA), server.key; other.key is an
    unrelated key."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=openami test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text(
        SAN + "\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid:always\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    (d / "server.pem").write_text((d / "leaf.pem").read_text() + (d / "ca.pem").read_text())
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", "other.key", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    base = tmp_path_factory.mktemp("tls-openami")
    srv = Server(base / "data", tls=(pki / "server.pem", pki / "server.key", pki / "ca.pem"))
    yield srv
    assert srv.stop() == 0, "openami (TLS) did not exit cleanly on SIGTERM"


@pytest.fixture(scope="module")
def creds(tls_server):
    return tls_server.create_account("tls-user")


def client(srv, creds, verify, service="ec2"):
    return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        verify=verify, config=Config(retries={"max_attempts": 1}))


def health(srv, ca, timeout=5):
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(srv.endpoint + "/health", timeout=timeout, context=context) as r:
        assert r.status == 200
        return r.read()


def test_boto3_over_https_trusting_the_ca(tls_server, creds, pki):
    assert tls_server.endpoint.startswith("https://127.0.0.1:")
    ec2 = client(tls_server, creds, verify=str(pki / "ca.pem"))
    regions = ec2.describe_regions()["Regions"]
    assert regions and all(r["Endpoint"] == tls_server.endpoint for r in regions), regions
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    found = ec2.describe_volumes(VolumeIds=[vol["VolumeId"]])["Volumes"]
    assert [v["VolumeId"] for v in found] == [vol["VolumeId"]]
    assert found[0]["Size"] == 1


def test_boto3_without_the_ca_fails_verification(tls_server, creds):
    ec2 = client(tls_server, creds, verify=True)
    with pytest.raises(botocore.exceptions.SSLError) as e:
        ec2.describe_regions()
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate verify failed" in str(e.value)


def aws_cli(srv, creds, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
               AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"], AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    for var in ("AWS_PROFILE", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        env.pop(var, None)
    return subprocess.run(["aws", "--endpoint-url", srv.endpoint, "--output", "json", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_aws_cli_with_ca_bundle(tls_server, creds, pki):
    out = aws_cli(tls_server, creds, "--ca-bundle", str(pki / "ca.pem"),
                  "ec2", "create-volume", "--availability-zone", "us-east-1a", "--size", "2")
    assert out.returncode == 0, out.stderr
    assert '"VolumeId": "vol-' in out.stdout
    out = aws_cli(tls_server, creds, "--ca-bundle", str(pki / "ca.pem"),
                  "ec2", "describe-regions")
    assert out.returncode == 0, out.stderr
    assert f'"Endpoint": "{tls_server.endpoint}"' in out.stdout
    # Without the bundle, the CLI refuses the unknown issuer.
    out = aws_cli(tls_server, creds, "ec2", "describe-regions")
    assert out.returncode != 0
    assert "SSL validation failed" in out.stderr or "CERTIFICATE_VERIFY_FAILED" in out.stderr, out.stderr


def coldsnap(binary, srv, creds, *args, ca=None):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
               AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"], AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=srv.endpoint,
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE"):
        env.pop(var, None)
    if ca:
        # coldsnap 0.12 (AWS SDK for Rust, rustls with the platform's roots through
        # rustls-native-certs) reads its trust store from SSL_CERT_FILE; it ignores
        # AWS_CA_BUNDLE.
        env["SSL_CERT_FILE"] = str(ca)
    return subprocess.run([binary, "--endpoint", srv.endpoint, "--region", "us-east-1", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_coldsnap_upload_and_download_over_https(tls_server, creds, pki, tmp_path):
    binary = coldsnap_bin()
    original = tmp_path / "disk.raw"
    make_image(original, 8 * MIB)
    ca = pki / "ca.pem"
    out = coldsnap(binary, tls_server, creds, "upload", "--no-progress", str(original), ca=ca)
    assert out.returncode == 0, out.stderr
    snap = out.stdout.strip()
    assert snap.startswith("snap-"), snap
    out = coldsnap(binary, tls_server, creds, "wait", snap, ca=ca)
    assert out.returncode == 0, out.stderr
    down = tmp_path / "down.raw"
    out = coldsnap(binary, tls_server, creds, "download", "--no-progress", snap, str(down), ca=ca)
    assert out.returncode == 0, out.stderr
    same_prefix_then_zeros(down, original)
    # Without the CA it does not trust the server, so the TLS really is verified.
    out = coldsnap(binary, tls_server, creds, "upload", "--no-progress", str(original))
    assert out.returncode != 0, "coldsnap uploaded to a server it should not trust"


def test_plain_http_to_the_tls_port_fails_and_the_server_carries_on(tls_server, pki):
    plain = tls_server.endpoint.replace("https://", "http://")
    with pytest.raises((OSError, http.client.HTTPException)):
        with urllib.request.urlopen(plain + "/health", timeout=15) as r:
            r.read()
    # Raw: the answer, if any, is never an HTTP response.
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=15) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = s.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/"), answer
    assert b'"ok"' in health(tls_server, pki / "ca.pem")


def test_a_stalled_handshake_times_out_without_blocking_others(tls_server, pki):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as stalled:
        # While one client sits in its handshake, others are served at once.
        started = time.monotonic()
        for _ in range(3):
            health(tls_server, pki / "ca.pem")
        assert time.monotonic() - started < 5
        # The server drops the silent client after its 10 s handshake limit.
        try:
            assert stalled.recv(1) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
        assert 8 < waited < 20, f"stalled handshake closed after {waited:.1f} s"


def test_a_flood_of_stalled_handshakes_is_bounded_and_then_served(tls_server, pki):
    # openami runs at most 128 handshakes at once (tls::MAX_HANDSHAKES); further
    # connections wait in the accept backlog. 140 silent clients therefore hold the
    # server's handshake slots until their 10 s limit, and a real client behind them is
    # served once those slots free up, not refused, and the server stays healthy.
    flood = [socket.create_connection(("127.0.0.1", tls_server.port), timeout=30)
             for _ in range(140)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert b'"ok"' in health(tls_server, pki / "ca.pem", timeout=30)
        waited = time.monotonic() - started
        assert 7 < waited < 25, f"a client behind the flood waited {waited:.1f} s"
    finally:
        for s in flood:
            s.close()
    started = time.monotonic()
    assert b'"ok"' in health(tls_server, pki / "ca.pem")
    assert time.monotonic() - started < 5


def serve_exits(tmp_path, *args, env=None):
    out = subprocess.run([openami_bin(), "serve", "--data-dir", str(tmp_path / "data"),
                          "--listen", "127.0.0.1:0", "--gc-interval", "0", *args],
                         env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0, "openami serve started despite bad TLS files"
    return out.stderr


def test_bad_certificate_or_key_files_stop_startup_naming_the_file(pki, tmp_path):
    missing = tmp_path / "missing-cert.pem"
    err = serve_exits(tmp_path, "--tls-cert", str(missing), "--tls-key", str(pki / "server.key"))
    assert str(missing) in err, err
    assert "panicked" not in err, err

    missing_key = tmp_path / "missing-key.pem"
    err = serve_exits(tmp_path, env={"OPENAMI_TLS_CERT": str(pki / "server.pem"),
                                     "OPENAMI_TLS_KEY": str(missing_key)})
    assert str(missing_key) in err, err

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    err = serve_exits(tmp_path, "--tls-cert", str(garbage), "--tls-key", str(pki / "server.key"))
    assert str(garbage) in err and "no PEM certificate" in err, err
    err = serve_exits(tmp_path, "--tls-cert", str(pki / "server.pem"), "--tls-key", str(garbage))
    assert str(garbage) in err and "no PEM private key" in err, err

    # A key that does not belong to the certificate.
    err = serve_exits(tmp_path, "--tls-cert", str(pki / "server.pem"),
                      "--tls-key", str(pki / "other.key"))
    assert str(pki / "other.key") in err and "does not fit" in err, err
    assert "panicked" not in err, err

    # One without the other.
    err = serve_exits(tmp_path, "--tls-cert", str(pki / "server.pem"))
    assert "--tls-key" in err, err


def test_sigterm_waits_for_a_request_in_flight_over_tls(pki, tmp_path):
    srv = Server(tmp_path / "data", tls=(pki / "server.pem", pki / "server.key", pki / "ca.pem"))
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        body = b"Action=DescribeRegions&Version=2016-11-15"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
                time.sleep(0.5)  # the server has the headers; the body is incomplete
                srv.proc.send_signal(signal.SIGTERM)
                time.sleep(1)
                assert srv.proc.poll() is None, "openami quit with a request in flight"
                s.sendall(body[10:])
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
        # Unsigned, so an AWS-style refusal: but a complete HTTP answer over TLS.
        assert answer.startswith(b"HTTP/1.1 "), answer
        assert srv.proc.wait(timeout=30) == 0
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        srv.log.close()


def openami_snapshot(srv, creds, tmp_path, *args, ca=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", OPENAMI_CACHE_DIR=str(tmp_path / "cache"))
    if ca:
        env["AWS_CA_BUNDLE"] = str(ca)
    return subprocess.run([openami_bin(), "snapshot", *args, "--endpoint", srv.endpoint,
                           "--region", "us-east-1", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_openami_snapshot_client_trusts_aws_ca_bundle(tls_server, creds, pki, tmp_path):
    data = os.urandom(3 * MIB + 100)
    image = tmp_path / "disk.raw"
    image.write_bytes(data)
    # Not trusted without the bundle.
    out = openami_snapshot(tls_server, creds, tmp_path, "upload", str(image))
    assert out.returncode != 0, "uploaded to a server whose issuer is unknown"
    out = openami_snapshot(tls_server, creds, tmp_path, "upload", str(image), ca=pki / "ca.pem")
    assert out.returncode == 0, out.stderr
    sid = out.stdout.strip()
    assert sid.startswith("snap-"), out.stdout
    ec2 = client(tls_server, creds, verify=str(pki / "ca.pem"))
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid],
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    down = tmp_path / "down.raw"
    out = openami_snapshot(tls_server, creds, tmp_path, "download", sid, str(down), ca=pki / "ca.pem")
    assert out.returncode == 0, out.stderr
    with open(down, "rb") as f:
        assert f.read(len(data)) == data
    # A bundle that cannot be read is named.
    out = openami_snapshot(tls_server, creds, tmp_path, "upload", str(image),
                           ca=tmp_path / "no-such-ca.pem")
    assert out.returncode != 0 and "no-such-ca.pem" in out.stderr, out.stderr


def test_audit_log_source_over_tls(tls_server, creds, pki):
    """The audit log knows the client's address on the TLS listener too."""
    vol = client(tls_server, creds, str(pki / "ca.pem")).create_volume(
        AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    text = (tls_server.data_dir / "audit" / "audit.log").read_text()
    lines = [json.loads(l) for l in text.splitlines()]
    line = next(l for l in lines if vol in l["resources"])
    assert line["action"] == "CreateVolume" and line["status"] == 200
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["source"]), line

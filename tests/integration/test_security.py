"""Data at rest and the audit log: the data directory is owner-only, a trace-level server
log holds no secret, and state-changing calls are recorded one JSON line each in
<data-dir>/audit/audit.log (rotated by size)."""

import base64
import hashlib
import json
import os
import re
import stat
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import Server, error_code

BLOCK = 512 * 1024


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def client(server, creds, service, captured=None):
    c = boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",
                     aws_access_key_id=creds["AccessKeyId"],
                     aws_secret_access_key=creds["SecretAccessKey"],
                     config=Config(retries={"max_attempts": 1}))
    if captured is not None:
        def keep(request, **_):
            captured.append(request.headers["Authorization"])
        c.meta.events.register("before-send", keep)
    return c


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def signatures(headers):
    """The Signature= values of captured Authorization headers."""
    out = []
    for h in headers:
        h = h.decode() if isinstance(h, bytes) else h
        m = re.search(r"Signature=([0-9a-f]{64})", h)
        assert m, h
        out.append(m.group(1))
    return out


def audit_lines(server):
    text = (server.data_dir / "audit" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def own_server(tmp_path):
    servers = []

    def start(*args, env=None):
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            srv = Server(tmp_path / f"s{len(servers)}" / "data", extra_args=args)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        servers.append(srv)
        return srv

    # Server puts server.log beside the data dir: one parent per server.
    for i in range(3):
        (tmp_path / f"s{i}").mkdir()
    yield start
    for srv in servers:
        assert srv.stop() == 0


def test_session_data_dir_owner_only(server, alice):
    # alice: an account was created (the catalog written) by `openami account create`.
    root = server.data_dir
    assert mode(root) == 0o700
    assert mode(root / "catalog.db") == 0o600
    for name in ["catalog.db-wal", "catalog.db-shm", "imds-token.key", "block-token.key"]:
        if (root / name).exists():
            assert mode(root / name) == 0o600, name
    assert mode(root / "audit") == 0o700
    assert mode(root / "audit" / "audit.log") == 0o600


def test_own_data_dir_all_owner_only(own_server):
    srv = own_server()
    creds = srv.create_account("perm-" + uuid.uuid4().hex[:6])
    ec2 = client(srv, creds, "ec2")
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ebs = client(srv, creds, "ebs")
    sid = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    data = os.urandom(BLOCK)
    ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=0, BlockData=data, DataLength=BLOCK,
                           Checksum=b64sha(data), ChecksumAlgorithm="SHA256")
    ec2.create_snapshot(VolumeId=vol)
    checked = 0
    for dirpath, dirnames, filenames in os.walk(srv.data_dir):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
            checked += 1
    assert mode(srv.data_dir) == 0o700
    assert checked > 10
    assert any((srv.data_dir / "regions" / "us-east-1" / "volumes").iterdir())


def test_trace_log_holds_no_secret(own_server):
    srv = own_server(env={"OPENAMI_LOG": "trace"})
    creds = srv.create_account("trace-" + uuid.uuid4().hex[:6])
    sent = []
    ec2 = client(srv, creds, "ec2", sent)
    ec2.describe_volumes()
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.delete_volume(VolumeId="vol-0000000000000000f")
    ssm = client(srv, creds, "ssm", sent)
    ssm.put_parameter(Name="/trace/p", Value="v", Type="String")
    ssm.get_parameter(Name="/trace/p")
    ebs = client(srv, creds, "ebs", sent)
    sid = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    data = os.urandom(BLOCK)
    ebs.put_snapshot_block(SnapshotId=sid, BlockIndex=0, BlockData=data, DataLength=BLOCK,
                           Checksum=b64sha(data), ChecksumAlgorithm="SHA256")
    sigs = signatures(sent)
    assert len(sigs) >= 7
    # A presigned query (the signature in the URL).
    url = client(srv, creds, "ec2").generate_presigned_url("describe_volumes", Params={}, ExpiresIn=60)
    query_sig = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url).group(1)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
        print(e.read()[:500])
    assert status in (200, 403)  # verified or refused: either way its signature is not logged
    sigs.append(query_sig)
    log = (srv.data_dir.parent / "server.log").read_text(errors="replace")
    # The log really is at trace level and saw these requests.
    assert "TRACE" in log
    assert "Signature=<redacted>" in log  # the requests' headers are logged, redacted
    assert "X-Amz-Signature=<redacted>" in log
    assert creds["AccessKeyId"] in log
    assert "ec2 request" in log and "ssm request" in log and "ebs request" in log
    assert creds["SecretAccessKey"] not in log
    for sig in sigs:
        assert sig not in log
    audit = (srv.data_dir / "audit" / "audit.log").read_text()
    assert creds["SecretAccessKey"] not in audit
    for sig in sigs:
        assert sig not in audit


def test_audit_log_records_state_changes(own_server):
    srv = own_server()
    creds = srv.create_account("audit-" + uuid.uuid4().hex[:6])
    ec2 = client(srv, creds, "ec2")
    created = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    vol = created["VolumeId"]
    ec2.describe_volumes(VolumeIds=[vol])
    with pytest.raises(botocore.exceptions.ClientError) as bad:
        ec2.delete_volume(VolumeId="vol-0000000000000000f")
    ssm = client(srv, creds, "ssm")
    put = ssm.put_parameter(Name="/audit/param", Value="secret-value-123", Type="String")
    ssm.get_parameter(Name="/audit/param")
    ebs = client(srv, creds, "ebs")
    started = ebs.start_snapshot(VolumeSize=1)
    with pytest.raises(botocore.exceptions.ClientError):  # a read (failing: still pending)
        ebs.list_snapshot_blocks(SnapshotId=started["SnapshotId"])
    ec2.describe_snapshots(SnapshotIds=[started["SnapshotId"]])

    lines = audit_lines(srv)
    assert [(l["service"], l["action"]) for l in lines] == [
        ("ec2", "CreateVolume"), ("ec2", "DeleteVolume"), ("ssm", "PutParameter"),
        ("ebs", "StartSnapshot")]
    for l in lines:
        assert l["account_id"] == creds["AccountId"]
        assert l["access_key_id"] == creds["AccessKeyId"]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", l["source"]), l
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", l["time"]), l
        assert l["request_id"]
    create, delete, param, snap = lines
    assert create["status"] == 200 and create["error_code"] is None
    assert vol in create["resources"]
    assert create["request_id"] == created["ResponseMetadata"]["RequestId"]
    assert delete["status"] == 400
    assert delete["error_code"] == error_code(bad.value)
    assert delete["resources"] == ["vol-0000000000000000f"]
    assert delete["request_id"] == bad.value.response["ResponseMetadata"]["RequestId"]
    assert param["status"] == 200 and param["resources"] == ["/audit/param"]
    assert param["request_id"] == put["ResponseMetadata"]["RequestId"]
    assert snap["status"] == 201 and snap["resources"] == [started["SnapshotId"]]
    text = (srv.data_dir / "audit" / "audit.log").read_text()
    assert creds["SecretAccessKey"] not in text
    assert "secret-value-123" not in text
    assert mode(srv.data_dir / "audit" / "audit.log") == 0o600


def test_audit_log_rotates(own_server):
    srv = own_server("--audit-max-bytes", "1500", "--audit-keep", "2")
    creds = srv.create_account("rot-" + uuid.uuid4().hex[:6])
    ec2 = client(srv, creds, "ec2")
    last = None
    for i in range(30):
        with pytest.raises(botocore.exceptions.ClientError) as bad:
            ec2.delete_volume(VolumeId=f"vol-{i:017x}")
        last = bad.value.response["ResponseMetadata"]["RequestId"]
    audit = srv.data_dir / "audit"
    names = sorted(p.name for p in audit.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    total = 0
    for name in names:
        path = audit / name
        assert mode(path) == 0o600
        text = path.read_text()
        assert 0 < len(text) <= 1500
        lines = [json.loads(l) for l in text.splitlines()]
        assert all(l["action"] == "DeleteVolume" for l in lines)
        total += len(lines)
    assert total < 30  # the oldest went with the third rotation
    newest = audit_lines(srv)
    assert newest[-1]["request_id"] == last
    assert newest[-1]["resources"] == [f"vol-{29:017x}"]


def test_audit_log_refused_signature_and_query_services(own_server):
    srv = own_server()
    creds = srv.create_account("audit2-" + uuid.uuid4().hex[:6])
    forged = dict(creds, SecretAccessKey="wrong" + creds["SecretAccessKey"][5:])
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client(srv, forged, "ec2").delete_volume(VolumeId="vol-0123456789abcdef0")
    elb = client(srv, creds, "elbv2")
    elb.describe_load_balancers()
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"
    with pytest.raises(botocore.exceptions.ClientError) as tg:
        elb.delete_target_group(TargetGroupArn=arn)
    asg = client(srv, creds, "autoscaling")
    asg.describe_auto_scaling_groups()
    with pytest.raises(botocore.exceptions.ClientError) as group:
        asg.delete_auto_scaling_group(AutoScalingGroupName="no-such-group")
    lines = audit_lines(srv)
    assert [(l["service"], l["action"]) for l in lines] == [
        ("ec2", "DeleteVolume"), ("elasticloadbalancing", "DeleteTargetGroup"),
        ("autoscaling", "DeleteAutoScalingGroup")]
    bad_sig, delete_tg, delete_group = lines
    # A refused signature is recorded with the key id it claimed (as CloudTrail does), but
    # no account: nothing about the signer was verified.
    assert bad_sig["account_id"] is None and bad_sig["access_key_id"] == creds["AccessKeyId"]
    assert bad_sig["error_code"] == error_code(refused.value)
    assert bad_sig["status"] == refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert bad_sig["resources"] == ["vol-0123456789abcdef0"]
    assert delete_tg["resources"] == [arn]
    assert delete_tg["error_code"] == error_code(tg.value)
    assert delete_group["resources"] == ["no-such-group"]
    assert delete_group["error_code"] == error_code(group.value)
    for l in (delete_tg, delete_group):
        assert l["account_id"] == creds["AccountId"] and l["access_key_id"] == creds["AccessKeyId"]
        assert l["status"] >= 400


def test_existing_data_dir_is_tightened(tmp_path):
    data = tmp_path / "data"
    srv = Server(data)
    assert srv.stop() == 0
    os.chmod(data, 0o755)
    for name in ["catalog.db", "imds-token.key"]:
        if (data / name).exists():
            os.chmod(data / name, 0o644)
    os.chmod(data / "audit" / "audit.log", 0o644)
    srv = Server(data)
    try:
        assert mode(data) == 0o700
        assert mode(data / "catalog.db") == 0o600
        if (data / "imds-token.key").exists():
            assert mode(data / "imds-token.key") == 0o600
        assert mode(data / "audit" / "audit.log") == 0o600
        log = (tmp_path / "server.log").read_text(errors="replace")
        assert "made owner-only" in log and "catalog.db" in log
    finally:
        assert srv.stop() == 0

"""Two openami nodes on one PostgreSQL catalog (`--catalog postgres://…`): accounts and
images written through either node, or by `openami catalog import` while both run, are
seen by both (the image index notices other nodes' commits through LISTEN/NOTIFY); a
catalog outage is answered with ServiceUnavailable, and service resumes when PostgreSQL
is back.

PostgreSQL is a real server started here: `initdb` + `postgres` on 127.0.0.1 and a free
port (as root, through `runuser -u postgres`, since PostgreSQL refuses to run as root)."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import Server, error_code, free_port, openami_bin


def pg_tool(name):
    """A PostgreSQL program from OPENAMI_PG_BIN (e.g. /usr/lib/postgresql/15/bin) or PATH."""
    path = os.environ.get("OPENAMI_PG_BIN", "") + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which(name, path=path)
    if not found:
        raise RuntimeError(f"`{name}` not on PATH nor in OPENAMI_PG_BIN: install PostgreSQL's "
                           "server and put /usr/lib/postgresql/<version>/bin on PATH")
    return found


class Postgres:
    def __init__(self, base):
        # Not under pytest's temp dirs, which the postgres user may not traverse.
        self.dir = Path(tempfile.mkdtemp(prefix="openami-pg-"))
        self.logfile = base / "postgres.log"
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        out = subprocess.run(
            self._as_pg([pg_tool("initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr}")
        self.start()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, args):
        return (["runuser", "-u", "postgres", "--"] if self.root else []) + args

    def start(self):
        self.log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            self._as_pg([pg_tool("postgres"), "-D", str(self.dir / "data"), "-k", str(self.dir),
                         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                         "-p", str(self.port)]),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            ready = subprocess.run([pg_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start")

    def stop(self):
        pid = (self.dir / "data" / "postmaster.pid").read_text().split()[0]
        subprocess.run(["kill", "-INT", pid], check=True)
        self.proc.wait(timeout=30)
        self.log.close()

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("pgcat")
    pg = Postgres(base)
    (base / "a").mkdir()
    (base / "b").mkdir()
    nodes = [Server(base / n / "data", extra_args=["--catalog", pg.url]) for n in "ab"]
    yield pg, nodes, base
    for node in nodes:
        node.stop()
    pg.stop()
    pg.remove()


def run(*args):
    return subprocess.run([openami_bin(), *args], capture_output=True, text=True)


def client(node, creds):
    import boto3
    from botocore.config import Config
    return boto3.client(
        "ec2", endpoint_url=node.endpoint, region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        config=Config(retries={"max_attempts": 1}))


def image(image_id, name, owner="137112412989"):
    alias = {"ImageOwnerAlias": "amazon"} if owner == "137112412989" else {}
    return {
        **alias, "ImageId": image_id, "Name": name, "OwnerId": owner, "Public": True,
        "CreationDate": "2024-01-01T00:00:00.000Z",
        "RootDeviceName": "/dev/xvda", "RootDeviceType": "ebs",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
            "SnapshotId": "snap-0123456789abcdef0", "VolumeSize": 8}}],
    }


def import_images(pg, base, images):
    path = base / f"images-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"Images": images}))
    out = run("catalog", "import", str(path), "--data-dir", str(base / "cli"),
              "--catalog", pg.url)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def eventually(check, seconds=5):
    deadline = time.time() + seconds
    while True:
        try:
            return check()
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_two_nodes_share_the_catalog_and_see_each_others_changes(cluster):
    pg, (a, b), base = cluster
    out = run("account", "create", "alice", "--data-dir", str(base / "cli"),
              "--catalog", pg.url)
    assert out.returncode == 0, out.stderr
    alice = json.loads(out.stdout)
    ec2_a, ec2_b = client(a, alice), client(b, alice)
    # Both nodes know the account created through neither.
    assert ec2_a.describe_images(Owners=["self"])["Images"] == []
    assert ec2_b.describe_images(Owners=["self"])["Images"] == []
    # Load both nodes' image indexes, then import behind their backs.
    assert ec2_a.describe_images(Owners=["amazon"])["Images"] == []
    assert ec2_b.describe_images(Owners=["amazon"])["Images"] == []
    report = import_images(pg, base, [image("ami-0aaaaaaaaaaaaaaa1", "pgcat-one")])
    assert report["Imported"] == ["ami-0aaaaaaaaaaaaaaa1"]

    def both_see(ids):
        for ec2 in (ec2_a, ec2_b):
            got = {i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]}
            assert got == ids
    eventually(lambda: both_see({"ami-0aaaaaaaaaaaaaaa1"}))

    # A change made through node a's API is seen by node b (its index loaded first).
    mine = "ami-0aaaaaaaaaaaaaaa2"
    import_images(pg, base, [image(mine, "pgcat-mine", owner=alice["AccountId"])])

    def b_sees_mine():
        assert [i["ImageId"] for i in ec2_b.describe_images(Owners=["self"])["Images"]] == [mine]
    eventually(b_sees_mine)
    assert ec2_b.describe_images(ImageIds=[mine])["Images"][0].get("Tags") is None
    ec2_a.create_tags(Resources=[mine], Tags=[{"Key": "k", "Value": "v"}])

    def b_sees_tag():
        tags = ec2_b.describe_images(ImageIds=[mine])["Images"][0].get("Tags")
        assert tags == [{"Key": "k", "Value": "v"}]
    eventually(b_sees_tag)


def test_store_gc_wants_the_catalog_the_server_used(cluster, tmp_path):
    pg, _, _ = cluster
    data = tmp_path / "data"
    srv = Server(data, extra_args=["--catalog", pg.url])
    assert srv.stop() == 0
    # The data directory's own (empty) catalog knows nothing of the uploads in progress
    # recorded in PostgreSQL: gc refuses it.
    out = run("store", "gc", "--data-dir", str(data))
    assert out.returncode != 0 and "--catalog" in out.stderr, out.stderr
    out = run("store", "gc", "--data-dir", str(data), "--catalog", pg.url)
    assert out.returncode == 0, out.stderr


def test_a_catalog_outage_is_service_unavailable_and_service_resumes(cluster):
    pg, (a, b), base = cluster
    out = run("account", "create", "bob", "--data-dir", str(base / "cli"),
              "--catalog", pg.url)
    assert out.returncode == 0, out.stderr
    bob = json.loads(out.stdout)
    ec2 = client(a, bob)
    ec2.describe_volumes()
    pg.stop()
    try:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.describe_volumes()
        assert error_code(e.value) == "ServiceUnavailable"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        pg.start()
    # Node a lost its connections on the failed call and checks the others before use.
    assert ec2.describe_volumes()["Volumes"] == []

    # Node b made no call during the outage: a connection used less than 2 s ago is
    # trusted, so its first call may fail once; the next one reconnects.
    def b_answers():
        try:
            return client(b, bob).describe_volumes()["Volumes"]
        except botocore.exceptions.ClientError as e:
            assert error_code(e) == "ServiceUnavailable"
            raise AssertionError("not yet") from e
    assert eventually(b_answers, seconds=3) == []


def test_an_unreachable_catalog_stops_serve_with_one_error_line(tmp_path):
    url = f"postgres://openami:secret@127.0.0.1:{free_port()}/x"
    out = subprocess.run(
        [openami_bin(), "serve", "--data-dir", str(tmp_path / "d"), "--listen",
         f"127.0.0.1:{free_port()}", "--catalog", url],
        capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    errors = [l for l in out.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1, out.stderr
    assert "catalog database unavailable" in errors[0] and "secret" not in errors[0]

"""Key pairs through boto3 and the AWS CLI: create (RSA and Ed25519, PEM and PPK) and
import, with fingerprints checked by openssl, ssh-keygen and puttygen; duplicates, not
found, filters, tags, delete, account and region isolation, malformed material, DryRun."""

import subprocess
import uuid

import botocore.exceptions
import pytest

from conftest import error_code


def name(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sh(cmd, input=None):
    out = subprocess.run(cmd, shell=True, input=input, capture_output=True, check=True)
    return out.stdout


def write_private(tmp_path, material, suffix=".pem"):
    path = tmp_path / (uuid.uuid4().hex + suffix)
    path.write_text(material)
    path.chmod(0o600)
    return path


def openssl_digest(line: bytes) -> str:
    # "SHA1(stdin)= aa:bb:…" / "MD5(stdin)= …"
    return line.decode().strip().split("= ", 1)[1]


def two_fields(line: str) -> str:
    return " ".join(line.split()[:2])


def ssh_keygen_sha256(path) -> str:
    # "256 SHA256:abc… comment (ED25519)"
    out = sh(f"ssh-keygen -l -E sha256 -f {path}").decode()
    return out.split()[1].removeprefix("SHA256:")


def public_key_of(c, key_name):
    kp = c.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)["KeyPairs"][0]
    return kp["PublicKey"]


def test_create_rsa_pem(alice, ec2, tmp_path):
    c = ec2(alice)
    n = name("rsa")
    k = c.create_key_pair(KeyName=n)
    assert k["KeyName"] == n
    assert k["KeyPairId"].startswith("key-") and len(k["KeyPairId"]) == 21
    assert k["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    pem = write_private(tmp_path, k["KeyMaterial"])
    # EC2's fingerprint of a key it made: SHA-1 of the PKCS#8 DER private key.
    fp = openssl_digest(sh(f"openssl pkcs8 -topk8 -nocrypt -in {pem} -outform DER | openssl sha1 -c"))
    assert k["KeyFingerprint"] == fp
    assert "2048 bit" in sh(f"openssl rsa -in {pem} -noout -text").decode()
    # The stored public key is the private key's.
    public = public_key_of(c, n)
    assert two_fields(public) == two_fields(sh(f"ssh-keygen -y -f {pem}").decode())
    assert public.split()[2] == n
    got = c.describe_key_pairs(KeyNames=[n])["KeyPairs"][0]
    assert "PublicKey" not in got
    assert got["KeyType"] == "rsa" and got["KeyFingerprint"] == fp
    assert got["KeyPairId"] == k["KeyPairId"] and "CreateTime" in got


def test_create_ed25519_with_the_cli(alice, aws, tmp_path):
    n = name("ed")
    k = aws(alice, "ec2", "create-key-pair", "--key-name", n, "--key-type", "ed25519")
    assert k["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = write_private(tmp_path, k["KeyMaterial"])
    # base64 SHA-256 of the public key as ssh-keygen prints it, with EC2's `=` padding.
    assert k["KeyFingerprint"] == ssh_keygen_sha256(key) + "="
    got = aws(alice, "ec2", "describe-key-pairs", "--key-names", n, "--include-public-key")
    kp = got["KeyPairs"][0]
    assert kp["KeyType"] == "ed25519"
    assert two_fields(kp["PublicKey"]) == two_fields(sh(f"ssh-keygen -y -f {key}").decode())
    by_id = aws(alice, "ec2", "describe-key-pairs", "--key-pair-ids", k["KeyPairId"])
    assert by_id["KeyPairs"][0]["KeyName"] == n
    deleted = aws(alice, "ec2", "delete-key-pair", "--key-name", n)
    assert deleted["Return"] is True and deleted["KeyPairId"] == k["KeyPairId"]


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_create_ppk(alice, ec2, tmp_path, key_type):
    c = ec2(alice)
    n = name("ppk")
    k = c.create_key_pair(KeyName=n, KeyType=key_type, KeyFormat="ppk")
    assert k["KeyMaterial"].startswith(f"PuTTY-User-Key-File-3: ssh-{key_type}\n")
    ppk = write_private(tmp_path, k["KeyMaterial"], ".ppk")
    # puttygen checks the MAC and decodes the private key.
    openssh = sh(f"puttygen {ppk} -O public-openssh").decode()
    assert two_fields(openssh) == two_fields(public_key_of(c, n))
    private = tmp_path / (n + ".openssh")
    sh(f"puttygen {ppk} -O private-openssh-new -o {private}")
    assert two_fields(sh(f"ssh-keygen -y -f {private}").decode()) == two_fields(openssh)
    if key_type == "ed25519":
        assert k["KeyFingerprint"] == ssh_keygen_sha256(private) + "="


def test_import_ssh_keygen_keys(alice, ec2, aws, tmp_path):
    c = ec2(alice)
    sh(f"ssh-keygen -q -t rsa -b 2048 -N '' -C me@host -f {tmp_path}/rsa")
    sh(f"ssh-keygen -q -t ed25519 -N '' -C me@host -f {tmp_path}/ed")
    # Imported RSA: MD5 of the DER SubjectPublicKeyInfo (not `ssh-keygen -E md5`).
    rsa_md5 = openssl_digest(sh(
        f"ssh-keygen -e -m PKCS8 -f {tmp_path}/rsa.pub | openssl pkey -pubin -outform DER | openssl md5 -c"))
    rsa_name = name("imp-rsa")
    r = c.import_key_pair(KeyName=rsa_name, PublicKeyMaterial=(tmp_path / "rsa.pub").read_bytes())
    assert r["KeyFingerprint"] == rsa_md5 and r["KeyPairId"].startswith("key-")
    assert "KeyMaterial" not in r
    assert two_fields(public_key_of(c, rsa_name)) == two_fields((tmp_path / "rsa.pub").read_text())

    ed_name = name("imp-ed")
    e = aws(alice, "ec2", "import-key-pair", "--key-name", ed_name,
            "--public-key-material", f"fileb://{tmp_path}/ed.pub")
    assert e["KeyFingerprint"] == ssh_keygen_sha256(tmp_path / "ed.pub") + "="
    kp = c.describe_key_pairs(KeyNames=[ed_name], IncludePublicKey=True)["KeyPairs"][0]
    assert kp["KeyType"] == "ed25519"
    assert kp["PublicKey"] == two_fields((tmp_path / "ed.pub").read_text()) + " " + ed_name

    # The same RSA key as RFC 4716 (SSH2) and as base64 DER.
    ssh2 = sh(f"ssh-keygen -e -f {tmp_path}/rsa.pub")
    assert c.import_key_pair(KeyName=name(), PublicKeyMaterial=ssh2)["KeyFingerprint"] == rsa_md5
    pem = sh(f"ssh-keygen -e -m PKCS8 -f {tmp_path}/rsa.pub").decode()
    der_b64 = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
    assert c.import_key_pair(KeyName=name(), PublicKeyMaterial=der_b64.encode())["KeyFingerprint"] == rsa_md5


def test_duplicates_not_found_and_delete(alice, ec2):
    c = ec2(alice)
    n = name("dup")
    k = c.create_key_pair(KeyName=n, KeyType="ed25519")
    for call in (lambda: c.create_key_pair(KeyName=n),
                 lambda: c.import_key_pair(KeyName=n, PublicKeyMaterial=public_key_of(c, n).encode())):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "InvalidKeyPair.Duplicate"
    missing = name("missing")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_key_pairs(KeyNames=[n, missing])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"
    assert f"'{missing}'" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_key_pairs(KeyPairIds=["key-0123456789abcdef0"])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"
    # Deleting a name that does not exist succeeds, as on EC2.
    gone = c.delete_key_pair(KeyName=missing)
    assert gone["Return"] is True and "KeyPairId" not in gone
    done = c.delete_key_pair(KeyPairId=k["KeyPairId"])
    assert done["Return"] is True and done["KeyPairId"] == k["KeyPairId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_key_pairs(KeyNames=[n])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.delete_key_pair(KeyPairId=k["KeyPairId"])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"
    # The name is free again.
    c.create_key_pair(KeyName=n, KeyType="ed25519")
    c.delete_key_pair(KeyName=n)


def test_filters_and_tags(alice, ec2):
    c = ec2(alice)
    run = uuid.uuid4().hex[:8]
    spec = lambda team: [{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": team},
                                                                {"Key": "run", "Value": run}]}]
    a = c.create_key_pair(KeyName=f"flt-{run}-a", KeyType="ed25519", TagSpecifications=spec("red"))
    b = c.create_key_pair(KeyName=f"flt-{run}-b", TagSpecifications=spec("blue"))
    assert {"Key": "team", "Value": "red"} in a["Tags"]

    def names(*filters):
        resp = c.describe_key_pairs(Filters=[{"Name": f, "Values": v} for f, v in filters])
        return sorted(k["KeyName"] for k in resp["KeyPairs"])

    both = sorted([a["KeyName"], b["KeyName"]])
    assert names(("key-name", [f"flt-{run}-*"])) == both
    assert names(("tag:run", [run])) == both
    assert names(("tag:run", [run]), ("key-type", ["rsa"])) == [b["KeyName"]]
    assert names(("tag:team", ["red"]), ("tag:run", [run])) == [a["KeyName"]]
    assert names(("fingerprint", [a["KeyFingerprint"]])) == [a["KeyName"]]
    assert names(("key-pair-id", [b["KeyPairId"]])) == [b["KeyName"]]
    assert names(("tag-key", ["run"]), ("key-name", [f"flt-{run}-?"])) == both
    with pytest.raises(botocore.exceptions.ClientError) as e:
        names(("no-such-filter", ["x"]))
    assert error_code(e.value) == "InvalidParameterValue"

    c.create_tags(Resources=[b["KeyPairId"]], Tags=[{"Key": "extra", "Value": "1"}])
    tags = c.describe_tags(Filters=[{"Name": "resource-id", "Values": [b["KeyPairId"]]}])["Tags"]
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in tags} == {
        ("team", "blue", "key-pair"), ("run", run, "key-pair"), ("extra", "1", "key-pair")}
    c.delete_tags(Resources=[b["KeyPairId"]], Tags=[{"Key": "team"}])
    got = c.describe_key_pairs(KeyPairIds=[b["KeyPairId"]])["KeyPairs"][0]
    assert {t["Key"] for t in got["Tags"]} == {"run", "extra"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.create_key_pair(KeyName=name(), TagSpecifications=[{"ResourceType": "volume",
                                                              "Tags": [{"Key": "a", "Value": "b"}]}])
    assert error_code(e.value) == "InvalidParameterValue"


def test_accounts_and_regions_are_isolated(alice, bob, ec2):
    a, b, west = ec2(alice), ec2(bob), ec2(alice, region="us-west-2")
    n = name("iso")
    k = a.create_key_pair(KeyName=n, KeyType="ed25519")
    for other in (b, west):
        assert n not in [x["KeyName"] for x in other.describe_key_pairs()["KeyPairs"]]
        for call in (lambda: other.describe_key_pairs(KeyNames=[n]),
                     lambda: other.describe_key_pairs(KeyPairIds=[k["KeyPairId"]]),
                     lambda: other.delete_key_pair(KeyPairId=k["KeyPairId"]),
                     lambda: other.create_tags(Resources=[k["KeyPairId"]],
                                               Tags=[{"Key": "x", "Value": "y"}])):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                call()
            assert error_code(e.value) == "InvalidKeyPair.NotFound"
    # The same name is free for bob, and his delete by name leaves alice's key alone.
    mine = b.create_key_pair(KeyName=n, KeyType="ed25519")
    assert mine["KeyPairId"] != k["KeyPairId"]
    assert b.delete_key_pair(KeyName=n)["KeyPairId"] == mine["KeyPairId"]
    assert a.describe_key_pairs(KeyNames=[n])["KeyPairs"][0]["KeyPairId"] == k["KeyPairId"]


def test_malformed_material_and_bad_parameters(alice, ec2, tmp_path):
    c = ec2(alice)
    sh(f"ssh-keygen -q -t ecdsa -N '' -f {tmp_path}/ec")
    sh(f"openssl genrsa -out {tmp_path}/small.pem 768")
    small = sh(f"openssl rsa -in {tmp_path}/small.pem -pubout")
    for material in (b"not a key", b"ssh-rsa AAAAB3NzaC1yc2E", b"ssh-ed25519 AAAA!!!",
                     (tmp_path / "ec.pub").read_bytes(), small):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.import_key_pair(KeyName=name("bad"), PublicKeyMaterial=material)
        assert error_code(e.value) == "InvalidKey.Format", material
    for kwargs in ({"KeyName": "x" * 256}, {"KeyName": "caf\u00e9"},
                   {"KeyName": name(), "KeyType": "dsa"}, {"KeyName": name(), "KeyFormat": "der"}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.create_key_pair(**kwargs)
        assert error_code(e.value) == "InvalidParameterValue", kwargs


def test_dry_run(alice, ec2):
    c = ec2(alice)
    n = name("dry")
    for call in (lambda: c.create_key_pair(KeyName=n, DryRun=True),
                 lambda: c.describe_key_pairs(DryRun=True),
                 lambda: c.delete_key_pair(KeyName=n, DryRun=True)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e.value) == "DryRunOperation"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.describe_key_pairs(KeyNames=[n])
    assert error_code(e.value) == "InvalidKeyPair.NotFound"

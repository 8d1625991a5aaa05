//! Key material against vectors made once with `ssh-keygen`, `openssl` and `puttygen`
//! (the commands are next to each value).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rsa::pkcs1::DecodeRsaPrivateKey;

use super::*;

const RSA_PUB: &str = include_str!("../testdata/rsa.pub");
const RSA_SSH2: &str = include_str!("../testdata/rsa.ssh2");
const RSA_DER_B64: &str = include_str!("../testdata/rsa.der.b64");
const RSA_DER: &[u8] = include_bytes!("../testdata/rsa.der");
const RSA_PKCS1: &str = include_str!("../testdata/rsa_pkcs1");
const RSA_OPENSSH: &str = include_str!("../testdata/rsa");
const RSA_PPK: &str = include_str!("../testdata/rsa.ppk");
const RSA1024_PUB: &str = include_str!("../testdata/rsa1024.pub");
const ED_PUB: &str = include_str!("../testdata/ed.pub");
const ED_OPENSSH: &str = include_str!("../testdata/ed");
const ED_PPK: &str = include_str!("../testdata/ed.ppk");
const EC_PUB: &str = include_str!("../testdata/ec.pub");

/// `ssh-keygen -e -m PKCS8 -f rsa.pub | openssl pkey -pubin -outform DER | openssl md5 -c`
const RSA_IMPORTED_FP: &str = "35:0f:6a:5d:0f:fc:00:05:7a:5b:d4:7e:d6:17:e3:65";
/// `ssh-keygen -l -E sha256 -f ed.pub`, plus the `=` padding EC2 keeps.
const ED_FP: &str = "DQS9HjsptsluGQCiOXezM0ERoyUnJp9YoRJgKWMntJQ=";

fn without_comment(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn imported_rsa_fingerprint_is_md5_of_spki() {
    let m = import(RSA_PUB.as_bytes()).unwrap();
    assert_eq!(m.key_type, KeyType::Rsa);
    assert_eq!(m.fingerprint, RSA_IMPORTED_FP);
    assert_eq!(m.openssh, without_comment(RSA_PUB));
}

#[test]
fn rsa_in_every_accepted_format_is_the_same_key() {
    let expected = import(RSA_PUB.as_bytes()).unwrap();
    for material in [RSA_SSH2.as_bytes(), RSA_DER_B64.as_bytes(), RSA_DER] {
        assert_eq!(import(material).unwrap(), expected);
    }
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        RSA_DER_B64.trim()
    );
    assert_eq!(import(pem.as_bytes()).unwrap(), expected);
}

#[test]
fn rsa_1024_is_accepted() {
    let m = import(RSA1024_PUB.as_bytes()).unwrap();
    // ssh-keygen -e -m PKCS8 -f rsa1024.pub | openssl pkey -pubin -outform DER | openssl md5 -c
    assert_eq!(
        m.fingerprint,
        "2b:35:e5:10:74:d8:67:e8:6f:3d:b1:ac:7f:e6:cc:27"
    );
}

#[test]
fn ed25519_fingerprint_is_padded_sha256() {
    let m = import(ED_PUB.as_bytes()).unwrap();
    assert_eq!(m.key_type, KeyType::Ed25519);
    assert_eq!(m.fingerprint, ED_FP);
    assert_eq!(m.openssh, without_comment(ED_PUB));
}

#[test]
fn created_rsa_fingerprint_is_sha1_of_pkcs8() {
    // openssl pkcs8 -topk8 -nocrypt -in rsa_pkcs1 -outform DER | openssl sha1 -c
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(RSA_PKCS1).unwrap();
    assert_eq!(
        created_rsa_fingerprint(&key).unwrap(),
        "b4:7f:41:78:46:b4:56:ba:76:68:57:84:82:85:09:fe:3c:06:a9:8c"
    );
}

#[test]
fn bad_material_is_a_format_error() {
    for bad in [
        &b""[..],
        b"hello",
        b"ssh-rsa AAAA",
        b"ssh-ed25519 !!!!",
        EC_PUB.as_bytes(),
        b"---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n",
        b"\x30\x82\x01\x22garbage",
    ] {
        assert!(
            matches!(import(bad), Err(MaterialError::Format)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn generated_keys_read_back() {
    let ed = generate(KeyType::Ed25519, KeyFormat::Pem, "k").unwrap();
    assert!(
        ed.private_key
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    let back = PrivateKey::from_openssh(&ed.private_key).unwrap();
    assert_eq!(
        back.public_key().to_openssh().unwrap(),
        format!("{} k", ed.public.openssh)
    );
    assert_eq!(import(ed.public.openssh.as_bytes()).unwrap(), ed.public);

    let start = std::time::Instant::now();
    let rsa = generate(KeyType::Rsa, KeyFormat::Pem, "k").unwrap();
    eprintln!("RSA-2048 generation took {:?}", start.elapsed());
    assert!(
        rsa.private_key
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(&rsa.private_key).unwrap();
    assert_eq!(key.size() * 8, RSA_BITS);
    assert_eq!(
        created_rsa_fingerprint(&key).unwrap(),
        rsa.public.fingerprint
    );
    let imported = import(rsa.public.openssh.as_bytes()).unwrap();
    assert_eq!(imported.openssh, rsa.public.openssh);
    assert_ne!(
        imported.fingerprint, rsa.public.fingerprint,
        "imported RSA keys use MD5"
    );
}

#[test]
fn ppk_matches_puttygen() {
    // puttygen ed -O private -o ed.ppk; puttygen rsa -O private -o rsa.ppk
    let ed = PrivateKey::from_openssh(ED_OPENSSH).unwrap();
    assert_eq!(ppk(&ed, "vector-ed").unwrap(), ED_PPK);
    let rsa = PrivateKey::from_openssh(RSA_OPENSSH).unwrap();
    assert_eq!(ppk(&rsa, "vector-rsa").unwrap(), RSA_PPK);
}

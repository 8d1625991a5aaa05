//! Key material: generating RSA and Ed25519 key pairs (PEM, OpenSSH or PuTTY private
//! keys), parsing imported public keys (OpenSSH, RFC 4716, DER), and the fingerprints EC2
//! shows for each.
//!
//! Fingerprints, as EC2 computes them:
//! - RSA created by EC2: SHA-1 of the PKCS#8 DER private key, colon-separated hex;
//! - RSA imported: MD5 of the DER `SubjectPublicKeyInfo`, colon-separated hex;
//! - Ed25519 (both): base64 SHA-256 of the SSH public key blob, with `=` padding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use ring::digest;
use rsa::BigUint;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use ssh_key::private::{Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::rand_core::OsRng;
use ssh_key::{Mpint, PrivateKey, PublicKey};

/// Size of the RSA keys CreateKeyPair makes.
pub const RSA_BITS: usize = 2048;
/// Smallest imported RSA modulus.
pub const RSA_MIN_BITS: usize = 1024;
/// Largest imported RSA modulus.
pub const RSA_MAX_BITS: usize = 4096;

/// Why key material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The imported public key is not in a format or of a type EC2 accepts.
    #[error("Key is not in valid OpenSSH public key format")]
    Format,
    /// An RSA key outside 1024..=4096 bits.
    #[error("Invalid RSA key size {0}: RSA keys must be 1024 to 4096 bits")]
    RsaSize(usize),
    /// Generating or encoding a key failed.
    #[error("key generation failed: {0}")]
    Crypto(String),
}

fn crypto(e: impl std::fmt::Display) -> MaterialError {
    MaterialError::Crypto(e.to_string())
}

/// Key algorithm (`KeyType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA.
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Wire name: `rsa` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rsa" => Some(KeyType::Rsa),
            "ed25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// Private key format (`KeyFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM: PKCS#1 for RSA, OpenSSH for Ed25519.
    Pem,
    /// PuTTY private key file, version 3, unencrypted.
    Ppk,
}

impl KeyFormat {
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pem" => Some(KeyFormat::Pem),
            "ppk" => Some(KeyFormat::Ppk),
            _ => None,
        }
    }
}

/// A public key as EC2 keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicMaterial {
    /// Algorithm.
    pub key_type: KeyType,
    /// OpenSSH line without comment: `ssh-ed25519 AAAA…`.
    pub openssh: String,
    /// EC2 fingerprint.
    pub fingerprint: String,
}

/// A new key pair: its public part and the private key, returned once.
#[derive(Debug)]
pub struct Generated {
    /// The public key.
    pub public: PublicMaterial,
    /// The private key (PEM, OpenSSH or PPK text).
    pub private_key: String,
}

/// `aa:bb:…` lowercase hex.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Base64 (padded) SHA-256 of an SSH public key blob.
fn sha256_fingerprint(blob: &[u8]) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, blob))
}

/// The fingerprint of an RSA key EC2 made: SHA-1 of its PKCS#8 DER form.
pub(crate) fn created_rsa_fingerprint(
    private: &rsa::RsaPrivateKey,
) -> Result<String, MaterialError> {
    let pkcs8 = private.to_pkcs8_der().map_err(crypto)?;
    Ok(colon_hex(
        digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, pkcs8.as_bytes()).as_ref(),
    ))
}

fn openssh_line(key_data: KeyData) -> Result<(String, Vec<u8>), MaterialError> {
    let key = PublicKey::new(key_data, "");
    Ok((
        key.to_openssh().map_err(crypto)?,
        key.to_bytes().map_err(crypto)?,
    ))
}

/// Makes a new key pair of `key_type`, its private key in `format`; `comment` (the key
/// name) goes into OpenSSH and PuTTY private keys.
pub fn generate(
    key_type: KeyType,
    format: KeyFormat,
    comment: &str,
) -> Result<Generated, MaterialError> {
    let keypair = match key_type {
        KeyType::Rsa => {
            let private = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(crypto)?;
            let fingerprint = created_rsa_fingerprint(&private)?;
            let pem = match format {
                KeyFormat::Pem => Some(
                    private
                        .to_pkcs1_pem(LineEnding::LF)
                        .map_err(crypto)?
                        .to_string(),
                ),
                KeyFormat::Ppk => None,
            };
            let keypair = RsaKeypair::try_from(&private).map_err(crypto)?;
            (KeypairData::Rsa(keypair), fingerprint, pem)
        }
        KeyType::Ed25519 => {
            let keypair = Ed25519Keypair::random(&mut OsRng);
            let (_, blob) = openssh_line(KeyData::Ed25519(keypair.public))?;
            (
                KeypairData::Ed25519(keypair),
                sha256_fingerprint(&blob),
                None,
            )
        }
    };
    let (data, fingerprint, pem) = keypair;
    let private = PrivateKey::new(data, comment).map_err(crypto)?;
    let (openssh, _) = openssh_line(private.public_key().key_data().clone())?;
    let private_key = match (format, pem) {
        (KeyFormat::Pem, Some(pem)) => pem,
        (KeyFormat::Pem, None) => private
            .to_openssh(LineEnding::LF)
            .map_err(crypto)?
            .to_string(),
        (KeyFormat::Ppk, _) => ppk(&private, comment)?,
    };
    Ok(Generated {
        public: PublicMaterial {
            key_type,
            openssh,
            fingerprint,
        },
        private_key,
    })
}

/// Appends an SSH `string` (u32 length, bytes).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends an SSH `mpint` (already in two's complement form, as ssh-key keeps it).
fn put_mpint(out: &mut Vec<u8>, n: &Mpint) {
    put_string(out, n.as_bytes());
}

/// Base64 in lines of 64 characters.
fn base64_lines(bytes: &[u8]) -> Vec<String> {
    let text = STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// A PuTTY-User-Key-File-3, unencrypted (the MAC key is then empty).
fn ppk(key: &PrivateKey, comment: &str) -> Result<String, MaterialError> {
    let public_blob = key.public_key().to_bytes().map_err(crypto)?;
    let mut private_blob = Vec::new();
    match key.key_data() {
        KeypairData::Rsa(k) => {
            put_mpint(&mut private_blob, &k.private.d);
            put_mpint(&mut private_blob, &k.private.p);
            put_mpint(&mut private_blob, &k.private.q);
            put_mpint(&mut private_blob, &k.private.iqmp);
        }
        KeypairData::Ed25519(k) => put_string(&mut private_blob, k.private.as_ref()),
        _ => return Err(MaterialError::Crypto("unexpected key type".into())),
    }
    let algorithm = key.algorithm().to_string();
    let encryption = "none";
    let mut mac_data = Vec::new();
    put_string(&mut mac_data, algorithm.as_bytes());
    put_string(&mut mac_data, encryption.as_bytes());
    put_string(&mut mac_data, comment.as_bytes());
    put_string(&mut mac_data, &public_blob);
    put_string(&mut mac_data, &private_blob);
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[]),
        &mac_data,
    );
    let public_lines = base64_lines(&public_blob);
    let private_lines = base64_lines(&private_blob);
    let mut out = format!(
        "PuTTY-User-Key-File-3: {algorithm}\nEncryption: {encryption}\nComment: {comment}\nPublic-Lines: {}\n",
        public_lines.len()
    );
    for line in public_lines {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("Private-Lines: {}\n", private_lines.len()));
    for line in private_lines {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("Private-MAC: {}\n", hex::encode(mac.as_ref())));
    Ok(out)
}

/// The RSA public key of SSH key data, checked for size.
fn rsa_public(n: &Mpint, e: &Mpint) -> Result<rsa::RsaPublicKey, MaterialError> {
    let n = BigUint::from_bytes_be(n.as_positive_bytes().ok_or(MaterialError::Format)?);
    let e = BigUint::from_bytes_be(e.as_positive_bytes().ok_or(MaterialError::Format)?);
    let bits = n.bits();
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(MaterialError::RsaSize(bits));
    }
    rsa::RsaPublicKey::new(n, e).map_err(|_| MaterialError::Format)
}

fn from_rsa(key: rsa::RsaPublicKey) -> Result<PublicMaterial, MaterialError> {
    let bits = key.n().bits();
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(MaterialError::RsaSize(bits));
    }
    let spki = key.to_public_key_der().map_err(|_| MaterialError::Format)?;
    let fingerprint = colon_hex(&Md5::digest(spki.as_bytes()));
    let ssh = ssh_key::public::RsaPublicKey::try_from(&key).map_err(|_| MaterialError::Format)?;
    let (openssh, _) = openssh_line(KeyData::Rsa(ssh))?;
    Ok(PublicMaterial {
        key_type: KeyType::Rsa,
        openssh,
        fingerprint,
    })
}

fn from_ssh(key: &PublicKey) -> Result<PublicMaterial, MaterialError> {
    match key.key_data() {
        KeyData::Rsa(k) => from_rsa(rsa_public(&k.n, &k.e)?),
        KeyData::Ed25519(k) => ed25519(k),
        _ => Err(MaterialError::Format),
    }
}

fn ed25519(key: &Ed25519PublicKey) -> Result<PublicMaterial, MaterialError> {
    let (openssh, blob) = openssh_line(KeyData::Ed25519(*key))?;
    Ok(PublicMaterial {
        key_type: KeyType::Ed25519,
        openssh,
        fingerprint: sha256_fingerprint(&blob),
    })
}

/// The body of an RFC 4716 (`---- BEGIN SSH2 PUBLIC KEY ----`) file: the decoded blob.
fn rfc4716_blob(text: &str) -> Result<Vec<u8>, MaterialError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("---- BEGIN SSH2 PUBLIC KEY ----") {
        return Err(MaterialError::Format);
    }
    let mut body = String::new();
    let mut continued = false;
    let mut ended = false;
    for line in lines {
        if line == "---- END SSH2 PUBLIC KEY ----" {
            ended = true;
            break;
        }
        // Headers ("Comment: …") may continue on the next line after a backslash.
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(MaterialError::Format);
    }
    STANDARD.decode(body).map_err(|_| MaterialError::Format)
}

/// Reads an imported public key: an OpenSSH line (`ssh-rsa …`, `ssh-ed25519 …`), an
/// RFC 4716 SSH2 file, or, for RSA, DER (`SubjectPublicKeyInfo` or PKCS#1) in base64,
/// PEM or binary.
pub fn import(material: &[u8]) -> Result<PublicMaterial, MaterialError> {
    let Ok(text) = std::str::from_utf8(material) else {
        return der(material);
    };
    let text = text.trim();
    if text.starts_with("---- BEGIN SSH2 PUBLIC KEY") {
        let blob = rfc4716_blob(text)?;
        return from_ssh(&PublicKey::from_bytes(&blob).map_err(|_| MaterialError::Format)?);
    }
    if text.starts_with("-----BEGIN PUBLIC KEY-----")
        || text.starts_with("-----BEGIN RSA PUBLIC KEY-----")
    {
        // PEM of SubjectPublicKeyInfo or PKCS#1, whatever its line length.
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der_bytes = STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .map_err(|_| MaterialError::Format)?;
        return der(&der_bytes);
    }
    if text.starts_with("ssh-") || text.starts_with("ecdsa-") || text.starts_with("sk-") {
        let line = text.lines().next().unwrap_or_default().trim();
        return from_ssh(&PublicKey::from_openssh(line).map_err(|_| MaterialError::Format)?);
    }
    let compact: String = text.split_whitespace().collect();
    match STANDARD.decode(compact) {
        Ok(bytes) if !bytes.is_empty() => der(&bytes),
        _ => der(material),
    }
}

fn der(bytes: &[u8]) -> Result<PublicMaterial, MaterialError> {
    let key = rsa::RsaPublicKey::from_public_key_der(bytes)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(bytes))
        .map_err(|_| MaterialError::Format)?;
    from_rsa(key)
}

#[cfg(test)]
mod tests;

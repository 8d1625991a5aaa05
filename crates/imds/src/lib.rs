//! The EC2 instance metadata service (IMDSv1 and IMDSv2) for openami instances.
//!
//! Every instance gets its own unix socket, served by [`ImdsServer::bind`]. QEMU's slirp
//! forwards each guest TCP connection to `169.254.169.254:80` to a command
//! (`guestfwd=tcp:169.254.169.254:80-cmd:openami imds-relay <socket>`) that runs
//! [`relay`], which joins the connection to that socket. The instance is therefore known
//! from the socket a request arrives on, never from an address. The instance's data comes
//! from a [`MetadataSource`], asked afresh for every request (so tag, key or option changes
//! show at once); `None` means the instance is gone and every request gets 404.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(source: Arc<dyn imds::MetadataSource>) -> Result<(), imds::Error> {
//! let key = [7u8; 32]; // the host's secret token key
//! let handle = imds::ImdsServer::bind("/run/openami/i-0123/imds.sock".as_ref(), source, key)?;
//! // … the guest boots, cloud-init crawls the tree …
//! let reached = handle.last_request_ms().is_some();
//! handle.shutdown();
//! # let _ = reached; Ok(()) }
//! ```
//!
//! # The tree
//!
//! Listings are `\n`-separated lines, subtrees end in `/`. Directories answer with or
//! without the trailing slash (cloud-init asks for `dynamic/instance-identity` without it),
//! and so do leaves. Entries marked † exist only when the instance has that value.
//!
//! ```text
//! /                                  1.0 2007-01-19 … 2021-03-23 … latest   (VERSIONS)
//! /{version}/                        dynamic, meta-data, user-data†
//!   user-data†                       the raw bytes (application/octet-stream)
//!   dynamic/                         instance-identity/
//!     instance-identity/             document
//!       document                     JSON identity document (below)
//!   meta-data/
//!     ami-id  ami-launch-index  ami-manifest-path ("(unknown)")
//!     block-device-mapping/          ami, root, ebsN, ephemeralN… → device name
//!     hostname  local-hostname  local-ipv4  mac
//!     instance-action ("none")  instance-id  instance-life-cycle ("on-demand")  instance-type
//!     kernel-id†  ramdisk-id†  product-codes†
//!     network/interfaces/macs/<mac>/ device-number (0), interface-id, ipv4-associations/†,
//!                                    local-hostname, local-ipv4s, mac, owner-id,
//!                                    public-hostname†, public-ipv4s†, security-group-ids,
//!                                    security-groups, subnet-id, subnet-ipv4-cidr-block,
//!                                    vpc-id, vpc-ipv4-cidr-block, vpc-ipv4-cidr-blocks
//!     placement/                     availability-zone, availability-zone-id, region
//!     public-hostname†  public-ipv4†
//!     public-keys/†                  0=<key name>;  0/ → openssh-key;  0/openssh-key → line
//!     reservation-id
//!     security-groups                names, one a line
//!     services/                      domain ("amazonaws.com"), partition ("aws")
//!     tags/instance/                 only with InstanceMetadataTags=enabled: keys, then
//!                                    tags/instance/<key> → value (keys containing `/`, `.`
//!                                    or `..` cannot be addressed and are not listed)
//! ```
//!
//! The identity document carries `accountId`, `architecture`, `availabilityZone`,
//! `billingProducts` (null), `devpayProductCodes` (null), `marketplaceProductCodes`,
//! `imageId`, `instanceId`, `instanceType`, `kernelId`, `pendingTime` (ISO 8601 UTC),
//! `privateIp`, `ramdiskId`, `region` and `version` (`"2017-09-30"`). **It is not signed**:
//! openami has no AWS signing key a guest could verify against, so `pkcs7`, `signature`
//! and `rsa2048` are neither listed nor served (404).
//!
//! # Requests and answers
//!
//! HTTP/1.1 with `Content-Length` on every response; keep-alive (several requests on one
//! connection, pipelining included) unless the client sends `Connection: close` (or speaks
//! HTTP/1.0 without `keep-alive`). The rules, in the order they apply ([`respond`]):
//!
//! | request | answer |
//! |---|---|
//! | unparsable, chunked, headers > 8 KiB, body > 64 KiB | 400 / 501 / 431 / 413, connection closed |
//! | instance gone ([`MetadataSource::metadata`] is `None`) | 404 |
//! | `HttpEndpoint=disabled` | 403 |
//! | method other than GET, HEAD, PUT | 405 |
//! | `PUT /latest/api/token` with `X-Forwarded-For` | 403 |
//! | `PUT /latest/api/token`, TTL header missing or not 1..=21600 | 400 |
//! | `PUT /latest/api/token`, TTL ok | 200, the token as body, TTL echoed in `X-aws-ec2-metadata-token-ttl-seconds` |
//! | `PUT /{version}/api/token` | 403 (AWS documents this) |
//! | PUT anywhere else, GET/HEAD on `…/api/token` | 405 |
//! | GET/HEAD with an invalid, expired or other instance's `X-aws-ec2-metadata-token` | 401 |
//! | GET/HEAD without a token when `HttpTokens=required` | 401 |
//! | GET/HEAD of a path not in the tree | 404 |
//! | GET/HEAD otherwise | 200 (HEAD: same headers, no body) |
//!
//! Error bodies are the small XHTML page AWS's IMDS sends (`<title>404 - Not Found</title>`).
//!
//! # Tokens
//!
//! Stateless and bound to the instance:
//!
//! ```text
//! token = base64url_nopad( expiry_ms (u64 big-endian, 8 bytes)
//!                          || HMAC-SHA256(key, "openami-imds-token-v1" || 0x00 || instance_id || 0x00 || expiry_ms) )
//! ```
//!
//! 54 characters. A token is valid while `now < expiry` and only for the instance whose id
//! it was minted for; the key is the host secret passed to [`ImdsServer::bind`], so tokens
//! survive a server restart with the same key and die with a new key.
//!
//! # Not emulated
//!
//! - **`HttpPutResponseHopLimit`**: AWS sets the IP TTL of the token response. slirp builds
//!   the guest's packets itself, so the host cannot set it; the option is only stored and
//!   reported by the API.
//! - **The IPv6 endpoint** `[fd00:ec2::254]` (`HttpProtocolIpv6`): slirp's guestfwd is
//!   IPv4-only.
//! - IAM credentials (`iam/`, `identity-credentials/`), `events/`, `spot/`, `metrics/`,
//!   `autoscaling/`, and per-instance throttling (connections per socket are bounded
//!   instead, [`ImdsConfig::max_connections`]).
//!
//! # Relay
//!
//! [`relay`] is what `openami imds-relay <socket>` runs for each guest connection: it copies
//! stdin → socket and socket → stdout until both sides are done, and never writes to
//! stderr (slirp makes stdin, stdout *and* stderr the guest's socket).

mod http;
mod metadata;
mod relay;
mod respond;
mod server;
mod time;
mod token;
mod tree;

pub use http::{Limits, ParseOutcome, Request, Response, parse_request};
pub use metadata::{Metadata, MetadataSource, Options};
pub use relay::{relay, relay_fds};
pub use respond::{respond, respond_to};
pub use server::{ImdsConfig, ImdsHandle, ImdsServer};
pub use token::{TOKEN_TTL_HEADER, mint_token, verify_token};
pub use tree::VERSIONS;

use std::path::PathBuf;

/// Errors of [`ImdsServer::bind`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call on the socket failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another server is listening on the socket path (or it is not a socket).
    #[error("{path} is in use (a live socket or another file)")]
    AddrInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// A configuration value is out of range.
    #[error("invalid IMDS configuration: {0}")]
    InvalidConfig(&'static str),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

//! What one instance's metadata service shows: [`Metadata`], its [`Options`], and the
//! [`MetadataSource`] the server asks for them on every request.

/// The instance's `MetadataOptions` that change how the service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `HttpTokens=required`: GET/HEAD without a token get 401 (IMDSv2 only).
    pub tokens_required: bool,
    /// `HttpEndpoint=enabled`; when false every request gets 403.
    pub endpoint_enabled: bool,
    /// `InstanceMetadataTags=enabled`: `meta-data/tags/instance/` is served.
    pub tags_enabled: bool,
}

impl Default for Options {
    /// AWS's defaults: endpoint enabled, tokens optional, tags disabled.
    fn default() -> Self {
        Options {
            tokens_required: false,
            endpoint_enabled: true,
            tags_enabled: false,
        }
    }
}

/// One instance's view of the metadata service, built fresh for each request by the
/// [`MetadataSource`]. Strings are served as given (no trailing newline is added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The instance's metadata options.
    pub options: Options,
    /// `i-…`; also what tokens are bound to.
    pub instance_id: String,
    /// `ami-…` the instance was launched from.
    pub ami_id: String,
    /// e.g. `t3.micro`.
    pub instance_type: String,
    /// `r-…`.
    pub reservation_id: String,
    /// The owner account (12 digits); `owner-id` and the document's `accountId`.
    pub account_id: String,
    /// e.g. `us-east-1`.
    pub region: String,
    /// e.g. `us-east-1a`.
    pub availability_zone: String,
    /// e.g. `use1-az1`.
    pub availability_zone_id: String,
    /// `x86_64` or `arm64` (the identity document's `architecture`).
    pub architecture: String,
    /// The index in its launch request.
    pub ami_launch_index: i64,
    /// e.g. `ip-172-31-5-10.ec2.internal`; also served as `hostname`.
    pub local_hostname: String,
    /// The private IPv4 address.
    pub local_ipv4: String,
    /// The public IPv4 address, if any (`public-ipv4` is absent otherwise).
    pub public_ipv4: Option<String>,
    /// The public DNS name, if any (`public-hostname` is absent otherwise).
    pub public_hostname: Option<String>,
    /// The primary interface's MAC, lower-case `aa:bb:…`; must equal QEMU's `mac=`.
    pub mac: String,
    /// `eni-…`.
    pub interface_id: String,
    /// `subnet-…`.
    pub subnet_id: String,
    /// The subnet's IPv4 CIDR block.
    pub subnet_cidr: String,
    /// `vpc-…`.
    pub vpc_id: String,
    /// The VPC's IPv4 CIDR block.
    pub vpc_cidr: String,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// Security group ids (`sg-…`).
    pub security_group_ids: Vec<String>,
    /// (key name, OpenSSH public key line); served as `public-keys/N=name`.
    pub public_keys: Vec<(String, String)>,
    /// (`ami` | `root` | `ebsN` | `ephemeralN` | `swap`, device such as `/dev/xvda` or `xvda`).
    pub block_devices: Vec<(String, String)>,
    /// The decoded user data; `None` → `user-data` is 404 and not listed.
    pub user_data: Option<Vec<u8>>,
    /// The instance's tags (served only with [`Options::tags_enabled`]).
    pub tags: Vec<(String, String)>,
    /// Launch time, unix milliseconds (the document's `pendingTime`).
    pub pending_time_ms: i64,
    /// `aki-…`, if any.
    pub kernel_id: Option<String>,
    /// `ari-…`, if any.
    pub ramdisk_id: Option<String>,
    /// Marketplace product codes.
    pub product_codes: Vec<String>,
}

/// Where the server gets an instance's [`Metadata`]; asked once per request.
pub trait MetadataSource: Send + Sync + 'static {
    /// The instance's current metadata, or `None` when the instance is gone (every
    /// request then gets 404).
    fn metadata(&self) -> Option<Metadata>;
}

impl<F> MetadataSource for F
where
    F: Fn() -> Option<Metadata> + Send + Sync + 'static,
{
    fn metadata(&self) -> Option<Metadata> {
        self()
    }
}

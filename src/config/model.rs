//! The validated configuration: what the program means, with types that cannot
//! hold an invalid value. Built only by `validate`.

use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (relative paths inside were resolved against its directory).
    pub source: PathBuf,
    pub global: Global,
    pub admin: Admin,
    /// `[cluster]`: this node shares its listeners, groups and registrations
    /// through etcd (SPEC §11); `None` = a standalone node.
    pub cluster: Option<Cluster>,
    /// `[acme]`: how certificates are ordered (SPEC §10).
    pub acme: Option<Acme>,
    /// `[[oidc]]`: the OpenID Providers users log in with (SPEC §9).
    pub oidc: Vec<OidcProvider>,
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<TargetGroup>,
}

/// One `[[oidc]]` (SPEC §9): an OpenID Provider and edgelb's client there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub name: String,
    /// Discovery at `{issuer}/.well-known/openid-configuration`; the ID
    /// token's `iss` must equal it.
    pub issuer: String,
    pub client_id: String,
    /// Read from `client_secret_file` when the configuration is loaded.
    pub client_secret: String,
    /// Space-separated, with `openid`.
    pub scope: String,
    pub session_cookie: String,
    pub session_timeout: Duration,
    /// Trust roots for the provider; `None` = the system's.
    pub ca_file: Option<PathBuf>,
}

/// `authenticate = { oidc, on_unauthenticated }` of a rule or a default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// The `[[oidc]]` provider's name.
    pub oidc: String,
    pub on_unauthenticated: OnUnauthenticated,
}

/// What a request without a valid session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    /// Redirected to the provider to log in.
    Authenticate,
    /// 401.
    Deny,
    /// Forwarded without identity headers.
    Allow,
}

/// `[acme]` (SPEC §10): the ACME server, the account and where its results are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    pub directory: String,
    pub contact: Vec<String>,
    /// Account key and certificates (files 0600).
    pub storage: PathBuf,
    pub challenge: AcmeChallenge,
    /// Renew this long before expiry (or at a third of the lifetime left,
    /// when that is shorter).
    pub renew_before: Duration,
    /// Trust roots for the ACME server; `None` = the system's.
    pub ca_file: Option<PathBuf>,
}

/// How an ACME server checks that we hold a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token at `http://NAME/.well-known/acme-challenge/TOKEN`.
    Http01,
    /// A certificate for ALPN `acme-tls/1` on port 443.
    TlsAlpn01,
}

/// `[cluster]` (SPEC §11): where the shared state lives and who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// etcd v3 endpoints, `http://` or `https://` host:port.
    pub etcd: Vec<EtcdEndpoint>,
    /// Every key of this load balancer starts with it (no trailing `/`).
    pub prefix: String,
    pub node_name: String,
    /// The last shared state applied, for a start while etcd is down.
    pub cache_file: Option<PathBuf>,
    /// TLS to etcd: trust roots (`ca_file`) and a client certificate.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// This node's listeners bind this address (with the shared port) instead
    /// of the shared one: several nodes on one host, each reachable on its own.
    pub bind_ip: Option<std::net::IpAddr>,
}

/// One etcd endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdEndpoint {
    pub tls: bool,
    /// `host:port`.
    pub authority: String,
    pub host: String,
    pub port: u16,
}

/// `[global]`.
#[derive(Debug, Clone)]
pub struct Global {
    /// 0 = one per CPU.
    pub worker_threads: usize,
    pub drain_timeout: Duration,
    /// First seals, all open. Empty = a random key per process.
    pub stickiness_key_files: Vec<PathBuf>,
    pub access_log: AccessLog,
    pub state_file: Option<PathBuf>,
    pub watch_config: bool,
    /// HTTP/1 connections start on the fast path (`listener::fast`), and
    /// body-less requests of hyper's server go on raw target sockets; off,
    /// hyper serves everything. For comparison and for the test suite's second
    /// dispatch position; new connections follow a reload.
    pub http1_fast_path: bool,
    /// New connections are spread by count over the workers
    /// (`listener::spread`); off, they stay where the kernel put them.
    pub spread_connections: bool,
    /// The DNS servers that resolve `dns`/`srv` targets (SPEC §12); empty =
    /// the nameservers of /etc/resolv.conf.
    pub resolvers: Vec<SocketAddr>,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub bind: SocketAddr,
    pub token_file: Option<PathBuf>,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Http,
    Https,
    Tcp,
    Tls,
}

impl ListenerProtocol {
    /// The spelling used in the config file, the admin API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "tls",
        }
    }

    /// Whether requests are HTTP (rules, forwarding of requests).
    pub fn is_http(self) -> bool {
        matches!(self, ListenerProtocol::Http | ListenerProtocol::Https)
    }
}

/// `tls_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    Tls13Tls12,
    Tls13Only,
}

/// One certificate and its key, paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[listeners]]`.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: ListenerProtocol,
    pub bind: SocketAddr,
    pub idle_timeout: Duration,
    pub http2: bool,
    pub tls_policy: TlsPolicy,
    pub certificates: Vec<CertificateFiles>,
    /// Certificates ordered by ACME: each entry's names (lower-case).
    pub acme_certificates: Vec<Vec<String>>,
    pub proxy_protocol: bool,
    /// 0 = unlimited.
    pub max_connections: u32,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Request bodies longer than this get 413; 0 = no limit.
    pub max_body_bytes: u64,
    pub default_action: Action,
    /// A login before the default action (SPEC §9).
    pub default_authenticate: Option<Authenticate>,
    /// Sorted by ascending priority.
    pub rules: Vec<Rule>,
    /// Client certificates (https and tls listeners; SPEC §8).
    pub mutual_authentication: MutualAuthentication,
}

/// What a listener asks of a client's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MutualAuthentication {
    /// No certificate is asked for.
    #[default]
    Off,
    /// A certificate that chains to the trust store is required.
    Verify(TrustSettings),
    /// A certificate is asked for, not verified, and passed to the target.
    Passthrough,
}

/// The trust settings of a listener in `verify` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSettings {
    /// PEM bundle of the CAs clients chain to.
    pub trust_store: PathBuf,
    /// Revocation lists (PEM or DER), re-read on reload.
    pub crls: Vec<PathBuf>,
    pub ignore_client_certificate_expiry: bool,
    /// Send the CA names in the CertificateRequest.
    pub advertise_trust_store_ca_names: bool,
}

/// One listener rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: Action,
    /// A login before the action (SPEC §9).
    pub authenticate: Option<Authenticate>,
}

/// A rule's conditions; `None` = that condition is not used.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub host: Option<Vec<String>>,
    pub path: Option<Vec<String>>,
    pub method: Option<Vec<String>>,
    /// (lower-case header name, value patterns)
    pub headers: Vec<(String, Vec<String>)>,
    /// key = value pairs, any of which matches.
    pub query: Option<Vec<(String, String)>>,
    pub source_ip: Option<Vec<IpNet>>,
}

/// What a rule or a listener's default does with a request.
#[derive(Debug, Clone)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// Forward to one group or split among several.
#[derive(Debug, Clone)]
pub struct Forward {
    /// (group name, weight); a single `forward = "g"` is one entry of weight 1.
    pub groups: Vec<(String, u32)>,
    pub stickiness: Option<Duration>,
}

/// A redirect; `None` parts keep the request's own.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status: u16,
}

/// A response edgelb writes itself.
#[derive(Debug, Clone)]
pub struct FixedResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// The HTTP version a group speaks to its targets (SPEC §7; ALB's
/// ProtocolVersion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2: prior knowledge on `http` groups, ALPN `h2` on `https` ones.
    Http2,
    /// HTTP/2 that takes gRPC requests only, and answers its own errors as gRPC.
    Grpc,
}

impl ProtocolVersion {
    /// HTTP/2 to the targets (`http2` and `grpc`).
    pub fn is_h2(self) -> bool {
        self != ProtocolVersion::Http1
    }
}

/// A target group's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    Http,
    Https,
    Tcp,
}

impl GroupProtocol {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Http => "http",
            GroupProtocol::Https => "https",
            GroupProtocol::Tcp => "tcp",
        }
    }
}

/// How a group picks a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    WeightedRoundRobin,
    LeastOutstandingRequests,
}

/// Group stickiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    LbCookie { duration: Duration },
    AppCookie { cookie: String, duration: Duration },
}

/// One `[[target_groups]]`.
#[derive(Debug, Clone)]
pub struct TargetGroup {
    pub name: String,
    pub protocol: GroupProtocol,
    pub protocol_version: ProtocolVersion,
    pub algorithm: Algorithm,
    pub slow_start: Duration,
    pub deregistration_delay: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub fail_open: bool,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub stickiness: Option<Stickiness>,
    pub targets: Vec<TargetSpec>,
    /// Names whose records are targets, followed by their TTL (SPEC §12).
    pub dns: Vec<DnsSource>,
    pub health_check: HealthCheck,
}

/// A target as configured: its address text (its identity), host, port and weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// As written in the file, e.g. `10.0.1.10:8080` or `app-2.internal:8080`.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// Where the target comes from (`/status`).
    pub origin: Origin,
    /// Failover tier: only the lowest tier with a target that can take
    /// traffic gets it (an SRV record's priority; 0 for everything else).
    pub tier: u16,
}

impl TargetSpec {
    /// A target of the configuration file.
    pub fn configured(address: String, host: String, port: u16, weight: u32) -> Self {
        TargetSpec {
            address,
            host,
            port,
            weight,
            origin: Origin::Config,
            tier: 0,
        }
    }
}

/// Where a target comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The configuration file.
    Config,
    /// The admin API's registration.
    Api,
    /// A `dns` source: an A/AAAA record of this name.
    Dns(String),
    /// An `srv` source: an SRV record of this name.
    Srv(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Config => f.write_str("config"),
            Origin::Api => f.write_str("api"),
            Origin::Dns(name) => write!(f, "dns:{name}"),
            Origin::Srv(name) => write!(f, "srv:{name}"),
        }
    }
}

/// A name in a group's `targets` that DNS resolves into targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsSource {
    /// Every A and AAAA address of `name`, on `port`, with `weight`.
    Hosts {
        name: String,
        port: u16,
        weight: u32,
    },
    /// The SRV records of `name`: host, port, weight, priority.
    Srv { name: String },
}

impl DnsSource {
    /// The origin of the targets it gives.
    pub fn origin(&self) -> Origin {
        match self {
            DnsSource::Hosts { name, .. } => Origin::Dns(name.clone()),
            DnsSource::Srv { name } => Origin::Srv(name.clone()),
        }
    }
}

/// Where health checks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthPort {
    TrafficPort,
    Port(u16),
}

/// `[target_groups.health_check]` with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub protocol: GroupProtocol,
    pub port: HealthPort,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges (gRPC status codes for a gRPC check).
    pub matcher: Vec<(u16, u16)>,
    /// A gRPC check (`protocol = "grpc"`): the `HealthCheckRequest`'s service
    /// name. The check then speaks HTTP/2 over `protocol` (http: h2c, https:
    /// ALPN h2).
    pub grpc_service: Option<String>,
}

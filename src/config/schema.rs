//! The serde-facing shape of the configuration file: exactly what the TOML says.
//!
//! Every field is optional here so that a missing key is reported by validation
//! (with a position, together with every other error) instead of stopping serde.
//! Nothing outside `config/` sees these types.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub global: Option<RawGlobal>,
    pub admin: Option<RawAdmin>,
    pub cluster: Option<RawCluster>,
    pub acme: Option<RawAcme>,
    #[serde(default)]
    pub oidc: Vec<RawOidc>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub target_groups: Vec<RawGroup>,
}

/// `[global]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawGlobal {
    pub worker_threads: Option<i64>,
    pub drain_timeout: Option<String>,
    pub stickiness_key_file: Option<OneOrMany>,
    pub access_log: Option<String>,
    pub state_file: Option<String>,
    pub watch_config: Option<bool>,
    pub http1_fast_path: Option<bool>,
    pub resolvers: Option<Vec<String>>,
    pub spread_connections: Option<bool>,
}

/// A string or a list of strings (`stickiness_key_file`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub bind: Option<String>,
    pub token_file: Option<String>,
}

/// One `[[oidc]]` provider (SPEC §9).
#[derive(Debug, Default, Deserialize)]
pub struct RawOidc {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub scope: Option<String>,
    pub session_cookie: Option<String>,
    pub session_timeout: Option<String>,
    pub ca_file: Option<String>,
}

/// `authenticate = { oidc, on_unauthenticated }` beside an action.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuthenticate {
    pub oidc: Option<String>,
    pub on_unauthenticated: Option<String>,
}

/// `[acme]` (SPEC §10).
#[derive(Debug, Default, Deserialize)]
pub struct RawAcme {
    pub directory: Option<String>,
    pub contact: Option<Vec<String>>,
    pub terms_of_service_agreed: Option<bool>,
    pub storage: Option<String>,
    pub challenge: Option<String>,
    pub renew_before: Option<String>,
    pub ca_file: Option<String>,
}

/// `[cluster]` (SPEC §11).
#[derive(Debug, Default, Deserialize)]
pub struct RawCluster {
    pub etcd: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub node_name: Option<String>,
    pub cache_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub bind_ip: Option<String>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawListener {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub bind: Option<String>,
    pub idle_timeout: Option<String>,
    pub http2: Option<bool>,
    pub tls_policy: Option<String>,
    pub certificates: Option<Vec<RawCertificate>>,
    pub proxy_protocol: Option<bool>,
    pub max_connections: Option<i64>,
    pub header_read_timeout: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub default_action: Option<RawAction>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub mutual_authentication: Option<RawMutualAuthentication>,
}

/// A listener's `mutual_authentication` table (SPEC §8).
#[derive(Debug, Default, Deserialize)]
pub struct RawMutualAuthentication {
    pub mode: Option<String>,
    pub trust_store: Option<String>,
    pub crls: Option<Vec<String>>,
    pub ignore_client_certificate_expiry: Option<bool>,
    pub advertise_trust_store_ca_names: Option<bool>,
}

/// One entry of a listener's `certificates`.
#[derive(Debug, Default, Deserialize)]
pub struct RawCertificate {
    pub cert: Option<String>,
    pub key: Option<String>,
    /// Names of a certificate ordered by ACME (SPEC §10).
    pub acme: Option<Vec<String>>,
}

/// One `[[listeners.rules]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawRule {
    pub priority: Option<i64>,
    pub conditions: Option<RawConditions>,
    pub action: Option<RawAction>,
}

/// A rule's `conditions` table.
#[derive(Debug, Default, Deserialize)]
pub struct RawConditions {
    pub host: Option<Vec<String>>,
    pub path: Option<Vec<String>>,
    pub method: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub query: Option<BTreeMap<String, String>>,
    pub source_ip: Option<Vec<String>>,
}

/// An action: exactly one of the three keys must be present.
#[derive(Debug, Default, Deserialize)]
pub struct RawAction {
    pub authenticate: Option<RawAuthenticate>,
    pub forward: Option<RawForward>,
    pub redirect: Option<RawRedirect>,
    pub fixed_response: Option<RawFixedResponse>,
}

/// `forward = "group"` or `forward = { target_groups = [...], stickiness = "1h" }`.
#[derive(Debug)]
pub enum RawForward {
    Group(String),
    Weighted(RawWeightedForward),
}

/// The table form of `forward`.
#[derive(Debug, Default, Deserialize)]
pub struct RawWeightedForward {
    pub target_groups: Option<Vec<RawWeightedGroup>>,
    pub stickiness: Option<String>,
}

/// One `{ name, weight }` of a weighted forward.
#[derive(Debug, Default, Deserialize)]
pub struct RawWeightedGroup {
    pub name: Option<String>,
    pub weight: Option<i64>,
}

// A hand-written visitor instead of `#[serde(untagged)]`: untagged enums buffer
// their input, which would hide unknown keys inside the table form from the
// unknown-key tracker.
impl<'de> Deserialize<'de> for RawForward {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ForwardVisitor;
        impl<'de> Visitor<'de> for ForwardVisitor {
            type Value = RawForward;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a target group name or a table with `target_groups`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawForward, E> {
                Ok(RawForward::Group(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawForward, A::Error> {
                RawWeightedForward::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawForward::Weighted)
            }
        }
        deserializer.deserialize_any(ForwardVisitor)
    }
}

/// `redirect = { ... }`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRedirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status: Option<i64>,
}

/// `fixed_response = { ... }`.
#[derive(Debug, Default, Deserialize)]
pub struct RawFixedResponse {
    pub status: Option<i64>,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

/// One `[[target_groups]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawGroup {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub protocol_version: Option<String>,
    pub algorithm: Option<String>,
    pub slow_start: Option<String>,
    pub deregistration_delay: Option<String>,
    pub request_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub fail_open: Option<bool>,
    pub ca_file: Option<String>,
    pub tls_verify: Option<bool>,
    pub stickiness: Option<RawStickiness>,
    pub targets: Option<Vec<RawTarget>>,
    pub health_check: Option<RawHealthCheck>,
}

/// A group's `stickiness` table.
#[derive(Debug, Default, Deserialize)]
pub struct RawStickiness {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub duration: Option<String>,
    pub cookie: Option<String>,
}

/// One entry of a group's `targets`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTarget {
    pub address: Option<String>,
    pub weight: Option<i64>,
    /// `{ dns = NAME, port, weight }`: every A/AAAA address (SPEC §12).
    pub dns: Option<String>,
    pub port: Option<i64>,
    /// `{ srv = NAME }`: host, port and weight from the SRV records.
    pub srv: Option<String>,
}

/// `[target_groups.health_check]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    pub protocol: Option<String>,
    pub port: Option<RawPort>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub matcher: Option<String>,
    pub grpc_service: Option<String>,
}

/// `port = "traffic-port"` or `port = 8081`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Number(i64),
    Named(String),
}

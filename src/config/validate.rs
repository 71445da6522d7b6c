//! Turns the raw file into a [`Config`], collecting every error with its place.

use super::duration::{format_duration, parse_duration};
use super::model::*;
use super::schema::*;
use super::span::{Anchor, DocPath, Seg};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod acme;
mod cluster;
mod mtls;
mod oidc;

pub use cluster::DEFAULT_PREFIX;

/// One problem found in the file, placed by its path in the document.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub path: DocPath,
    pub anchor: Anchor,
    pub message: String,
}

/// Longest host/path/header pattern accepted in a rule condition.
pub const MAX_PATTERN_LEN: usize = 128;
/// Largest fixed-response body.
pub const MAX_FIXED_BODY: usize = 1024;

/// Collects diagnostics while walking the raw config.
struct Validator<'a> {
    base_dir: &'a Path,
    errors: Vec<Diagnostic>,
    /// Problems that do not stop the file (an expired certificate).
    warnings: Vec<Diagnostic>,
    /// Whether `[acme]` is there for `{ acme = [...] }` entries.
    acme_configured: bool,
    /// The `[[oidc]]` names an `authenticate` may use.
    oidc_names: Vec<String>,
}

/// Builds a path from segments: `p(&["listeners"], 2, "name")`-style helpers.
fn key(path: &[Seg], k: &str) -> DocPath {
    let mut p = path.to_vec();
    p.push(Seg::Key(k.to_owned()));
    p
}
fn idx(path: &[Seg], i: usize) -> DocPath {
    let mut p = path.to_vec();
    p.push(Seg::Index(i));
    p
}

impl Validator<'_> {
    fn err(&mut self, path: DocPath, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            path,
            anchor: Anchor::Value,
            message: message.into(),
        });
    }

    fn warn(&mut self, path: DocPath, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            path,
            anchor: Anchor::Value,
            message: message.into(),
        });
    }

    fn err_key(&mut self, path: DocPath, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            path,
            anchor: Anchor::Key,
            message: message.into(),
        });
    }

    fn required<'v, T>(&mut self, value: &'v Option<T>, at: &[Seg], name: &str) -> Option<&'v T> {
        if value.is_none() {
            self.err(at.to_vec(), format!("missing key `{name}`"));
        }
        value.as_ref()
    }

    fn duration(&mut self, value: &Option<String>, at: DocPath, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => match parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.err(at, e);
                    default
                }
            },
        }
    }

    fn duration_in(
        &mut self,
        value: &Option<String>,
        at: DocPath,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let d = self.duration(value, at.clone(), default);
        if value.is_some() && (d < min || d > max) {
            self.err(
                at,
                format!(
                    "must be between {} and {}",
                    format_duration(min),
                    format_duration(max)
                ),
            );
            return default;
        }
        d
    }

    fn int_in(&mut self, value: Option<i64>, at: DocPath, default: i64, min: i64, max: i64) -> i64 {
        match value {
            None => default,
            Some(v) if v < min || v > max => {
                self.err(at, format!("{v} is out of range {min}..={max}"));
                default
            }
            Some(v) => v,
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn key_file(&mut self, text: &str, at: DocPath) -> PathBuf {
        let p = self.path(text);
        if let Err(e) = read_key_file(&p) {
            self.err(at, e);
        }
        p
    }

    fn readable_file(&mut self, text: &str, at: DocPath) -> PathBuf {
        let p = self.path(text);
        if let Err(e) = std::fs::File::open(&p) {
            self.err(at, format!("cannot read {}: {e}", p.display()));
        }
        p
    }
}

/// Smallest stickiness key, in bytes, after surrounding whitespace is removed.
pub const MIN_KEY_BYTES: usize = 32;

/// Reads a stickiness key file: its content without surrounding whitespace,
/// at least [`MIN_KEY_BYTES`] long (`openssl rand -hex 32` makes one).
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = raw.trim_ascii();
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "{} holds {} bytes; a stickiness key needs at least {MIN_KEY_BYTES} (openssl rand -hex 32)",
            path.display(),
            key.len()
        ));
    }
    Ok(key.to_vec())
}

/// Validates `raw`; relative paths are resolved against `base_dir`.
/// Which kind of document is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// A node's own file (standalone, or a cluster node's local part).
    Whole,
    /// The shared part of a cluster (`{prefix}/config`): no [global],
    /// [admin] or [cluster] (SPEC §11); `local_acme` when the node's own
    /// file has the `[acme]` its ACME certificates use.
    Shared { local_acme: bool },
}

pub fn validate(
    raw: &RawConfig,
    source: &Path,
    base_dir: &Path,
    document: Document,
) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut v = Validator {
        base_dir,
        errors: Vec::new(),
        warnings: Vec::new(),
        acme_configured: false,
        oidc_names: Vec::new(),
    };
    let global = global(&mut v, raw.global.as_ref());
    let admin = admin(&mut v, raw.admin.as_ref());
    let clustered = raw.cluster.is_some() || matches!(document, Document::Shared { .. });
    let acme = acme::acme(&mut v, raw.acme.as_ref(), clustered);
    v.acme_configured = acme.is_some() || matches!(document, Document::Shared { local_acme: true });
    let oidc = oidc::providers(&mut v, &raw.oidc);
    v.oidc_names = oidc.iter().map(|p| p.name.clone()).collect();
    let cluster = match document {
        Document::Whole => cluster::cluster(&mut v, raw),
        Document::Shared { .. } => {
            cluster::shared_document(&mut v, raw);
            None
        }
    };
    let groups = target_groups(&mut v, &raw.target_groups);
    let group_protocols: HashMap<&str, GroupProtocol> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.protocol))
        .collect();
    let listeners = listeners(&mut v, &raw.listeners, &group_protocols);
    if document == Document::Whole
        && let Some(l) = listeners.iter().find(|l| l.bind == admin.bind)
    {
        v.err(
            vec![Seg::Key("admin".into()), Seg::Key("bind".into())],
            format!(
                "admin bind address {} is also listener {:?}'s",
                admin.bind, l.name
            ),
        );
    }
    if v.errors.is_empty() {
        let config = Config {
            source: source.to_path_buf(),
            global,
            admin,
            cluster,
            acme,
            oidc,
            listeners,
            target_groups: groups,
        };
        Ok((config, v.warnings))
    } else {
        Err(v.errors)
    }
}

/// `[global] resolvers`: `ip` or `ip:port` (53 by default).
fn resolvers(v: &mut Validator, raw: Option<&[String]>, at: DocPath) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, text) in raw.unwrap_or_default().iter().enumerate() {
        let parsed = text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(addr) => out.push(addr),
            Err(_) => v.err(
                idx(&at, i),
                format!("invalid resolver {text:?}: expected an IP address, optionally with :port"),
            ),
        }
    }
    out
}

fn global(v: &mut Validator, raw: Option<&RawGlobal>) -> Global {
    let at = vec![Seg::Key("global".into())];
    let empty = RawGlobal::default();
    let raw = raw.unwrap_or(&empty);
    let worker_threads =
        v.int_in(raw.worker_threads, key(&at, "worker_threads"), 0, 0, 1024) as usize;
    let drain_timeout = v.duration(
        &raw.drain_timeout,
        key(&at, "drain_timeout"),
        Duration::from_secs(30),
    );
    let stickiness_key_files = match &raw.stickiness_key_file {
        None => Vec::new(),
        Some(OneOrMany::One(p)) => vec![v.key_file(p, key(&at, "stickiness_key_file"))],
        Some(OneOrMany::Many(ps)) => {
            if ps.is_empty() {
                v.err(
                    key(&at, "stickiness_key_file"),
                    "the list of key files is empty",
                );
            }
            let at = key(&at, "stickiness_key_file");
            ps.iter()
                .enumerate()
                .map(|(i, p)| v.key_file(p, idx(&at, i)))
                .collect()
        }
    };
    let access_log = match raw.access_log.as_deref() {
        None | Some("off") => AccessLog::Off,
        Some("stdout") => AccessLog::Stdout,
        Some("") => {
            v.err(
                key(&at, "access_log"),
                "expected \"off\", \"stdout\" or a file path",
            );
            AccessLog::Off
        }
        Some(p) => AccessLog::File(v.path(p)),
    };
    Global {
        worker_threads,
        drain_timeout,
        stickiness_key_files,
        access_log,
        state_file: raw.state_file.as_deref().map(|p| v.path(p)),
        watch_config: raw.watch_config.unwrap_or(false),
        http1_fast_path: raw.http1_fast_path.unwrap_or(true),
        spread_connections: raw.spread_connections.unwrap_or(true),
        resolvers: resolvers(v, raw.resolvers.as_deref(), key(&at, "resolvers")),
    }
}

/// The admin API's default address.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:9901";

fn admin(v: &mut Validator, raw: Option<&RawAdmin>) -> Admin {
    let at = vec![Seg::Key("admin".into())];
    let empty = RawAdmin::default();
    let raw = raw.unwrap_or(&empty);
    let default: SocketAddr = DEFAULT_ADMIN_BIND.parse().expect("valid default");
    let bind = match &raw.bind {
        None => default,
        Some(b) => socket_addr(v, b, key(&at, "bind")).unwrap_or(default),
    };
    let token_file = raw
        .token_file
        .as_ref()
        .map(|p| v.readable_file(p, key(&at, "token_file")));
    Admin { bind, token_file }
}

fn socket_addr(v: &mut Validator, text: &str, at: DocPath) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let msg = match text.rsplit_once(':') {
                Some((_, port)) if port.parse::<u16>().is_err() => {
                    format!("port {port:?} out of range 0..=65535 in {text:?}")
                }
                _ => format!(
                    "invalid address {text:?}: expected IP:PORT, e.g. \"0.0.0.0:80\" or \"[::]:443\""
                ),
            };
            v.err(at, msg);
            None
        }
    }
}

fn listeners(
    v: &mut Validator,
    raw: &[RawListener],
    groups: &HashMap<&str, GroupProtocol>,
) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    for (i, l) in raw.iter().enumerate() {
        let at = vec![Seg::Key("listeners".into()), Seg::Index(i)];
        let name = v
            .required(&l.name, &at, "name")
            .cloned()
            .unwrap_or_default();
        if l.name.is_some() {
            if name.is_empty() {
                v.err(key(&at, "name"), "listener name is empty");
            } else if !names.insert(name.clone()) {
                v.err(
                    key(&at, "name"),
                    format!("duplicate listener name {name:?}"),
                );
            }
        }
        let protocol = match v.required(&l.protocol, &at, "protocol").map(String::as_str) {
            None => ListenerProtocol::Http,
            Some("http") => ListenerProtocol::Http,
            Some("https") => ListenerProtocol::Https,
            Some("tcp") => ListenerProtocol::Tcp,
            Some("tls") => ListenerProtocol::Tls,
            Some(other) => {
                v.err(key(&at, "protocol"), format!("unknown protocol {other:?}: expected \"http\", \"https\", \"tcp\" or \"tls\""));
                ListenerProtocol::Http
            }
        };
        let bind = v
            .required(&l.bind, &at, "bind")
            .cloned()
            .and_then(|b| socket_addr(v, &b, key(&at, "bind")))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if l.bind.is_some() && bind.port() != 0 {
            if let Some(other) = binds.get(&bind) {
                v.err(
                    key(&at, "bind"),
                    format!("bind address {bind} is already used by listener {other:?}"),
                );
            } else {
                binds.insert(bind, name.clone());
            }
        }
        let l4 = !protocol.is_http();
        let idle_default = Duration::from_secs(if l4 { 350 } else { 60 });
        let idle_timeout = v.duration_in(
            &l.idle_timeout,
            key(&at, "idle_timeout"),
            idle_default,
            Duration::from_secs(1),
            Duration::from_secs(4000),
        );
        let tls_policy = match l.tls_policy.as_deref() {
            None | Some("tls13-tls12") => TlsPolicy::Tls13Tls12,
            Some("tls13-only") => TlsPolicy::Tls13Only,
            Some(other) => {
                v.err(
                    key(&at, "tls_policy"),
                    format!(
                        "unknown tls_policy {other:?}: expected \"tls13-tls12\" or \"tls13-only\""
                    ),
                );
                TlsPolicy::Tls13Tls12
            }
        };
        let mut acme_certificates = Vec::new();
        let certificates = certificates(v, l, protocol, &at, &mut acme_certificates);
        let mutual_authentication = mtls::mutual_authentication(v, l, protocol, &at);
        if l.proxy_protocol == Some(true) && !l4 {
            v.err(
                key(&at, "proxy_protocol"),
                "proxy_protocol applies to tcp and tls listeners only",
            );
        }
        let max_connections = v.int_in(
            l.max_connections,
            key(&at, "max_connections"),
            0,
            0,
            u32::MAX as i64,
        ) as u32;
        let header_read_timeout = v.duration_in(
            &l.header_read_timeout,
            key(&at, "header_read_timeout"),
            Duration::from_secs(10),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        let max_header_bytes = v.int_in(
            l.max_header_bytes,
            key(&at, "max_header_bytes"),
            65536,
            8192,
            1 << 20,
        ) as usize;
        let max_body_bytes =
            v.int_in(l.max_body_bytes, key(&at, "max_body_bytes"), 0, 0, i64::MAX) as u64;
        if l4 && l.max_body_bytes.is_some() {
            v.err(
                key(&at, "max_body_bytes"),
                format!(
                    "max_body_bytes applies to http and https listeners only, not {}",
                    protocol.as_str()
                ),
            );
        }
        let (default_action, default_authenticate) =
            match v.required(&l.default_action, &at, "default_action") {
                Some(a) => action_and_login(v, a, key(&at, "default_action"), protocol, groups),
                None => (None, None),
            };
        if l4 && !l.rules.is_empty() {
            v.err(
                key(&at, "rules"),
                format!(
                    "rules apply to http and https listeners only, not {}",
                    protocol.as_str()
                ),
            );
        }
        let rules = rules(v, &l.rules, &at, protocol, groups);
        out.push(Listener {
            name,
            protocol,
            bind,
            idle_timeout,
            http2: l.http2.unwrap_or(true),
            tls_policy,
            certificates,
            acme_certificates,
            mutual_authentication,
            proxy_protocol: l.proxy_protocol.unwrap_or(false),
            max_connections,
            header_read_timeout,
            max_header_bytes,
            max_body_bytes,
            default_action: default_action.unwrap_or(Action::Forward(Forward {
                groups: Vec::new(),
                stickiness: None,
            })),
            default_authenticate,
            rules,
        });
    }
    out
}

fn certificates(
    v: &mut Validator,
    l: &RawListener,
    protocol: ListenerProtocol,
    at: &[Seg],
    acme_names: &mut Vec<Vec<String>>,
) -> Vec<CertificateFiles> {
    let needs = matches!(protocol, ListenerProtocol::Https | ListenerProtocol::Tls);
    let list = l.certificates.as_deref().unwrap_or(&[]);
    if needs && list.is_empty() {
        v.err(
            at.to_vec(),
            format!("{} listener has no certificates", protocol.as_str()),
        );
    }
    if !needs && !list.is_empty() {
        v.err(
            key(at, "certificates"),
            format!(
                "certificates apply to https and tls listeners only, not {}",
                protocol.as_str()
            ),
        );
    }
    let at = key(at, "certificates");
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = idx(&at, i);
        if let Some(names) = &c.acme {
            if c.cert.is_some() || c.key.is_some() {
                v.err(
                    at.clone(),
                    "a certificate entry is either { cert, key } or { acme = [names] }, not both",
                );
            }
            if let Some(names) = acme::entry(v, names, &key(&at, "acme")) {
                acme_names.push(names);
            }
            continue;
        }
        let cert = v.required(&c.cert, &at, "cert").cloned();
        let key_file = v.required(&c.key, &at, "key").cloned();
        if let (Some(cert), Some(key_file)) = (cert, key_file) {
            let before = v.errors.len();
            let cert = v.readable_file(&cert, key(&at, "cert"));
            let key_path = v.readable_file(&key_file, key(&at, "key"));
            if v.errors.len() == before {
                match super::certs::load(&cert, &key_path) {
                    Err(e) => v.err(at.clone(), e),
                    Ok(loaded) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        if let Some(end) = loaded.not_after.filter(|end| *end < now) {
                            let date = crate::wire::time::rfc3339(
                                std::time::UNIX_EPOCH + Duration::from_secs(end.max(0) as u64),
                            );
                            v.warn(
                                key(&at, "cert"),
                                format!("certificate {} expired on {date}", cert.display()),
                            );
                        }
                    }
                }
            }
            out.push(CertificateFiles {
                cert,
                key: key_path,
            });
        }
    }
    out
}

fn rules(
    v: &mut Validator,
    raw: &[RawRule],
    at: &[Seg],
    protocol: ListenerProtocol,
    groups: &HashMap<&str, GroupProtocol>,
) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut priorities = HashSet::new();
    let at = key(at, "rules");
    for (i, r) in raw.iter().enumerate() {
        let at = idx(&at, i);
        let priority = v.required(&r.priority, &at, "priority").copied();
        let priority = match priority {
            Some(p) if !(1..=50000).contains(&p) => {
                v.err(
                    key(&at, "priority"),
                    format!("priority {p} is out of range 1..=50000"),
                );
                None
            }
            Some(p) => {
                if !priorities.insert(p) {
                    v.err(
                        key(&at, "priority"),
                        format!("duplicate rule priority {p} in this listener"),
                    );
                }
                Some(p as u32)
            }
            None => None,
        };
        let conditions = match v.required(&r.conditions, &at, "conditions") {
            Some(c) => conditions(v, c, key(&at, "conditions")),
            None => None,
        };
        let (action, authenticate) = match v.required(&r.action, &at, "action") {
            Some(a) => action_and_login(v, a, key(&at, "action"), protocol, groups),
            None => (None, None),
        };
        if let (Some(priority), Some(conditions), Some(action)) = (priority, conditions, action) {
            out.push(Rule {
                priority,
                conditions,
                action,
                authenticate,
            });
        }
    }
    out.sort_by_key(|r| r.priority);
    out
}

fn patterns(
    v: &mut Validator,
    list: &Option<Vec<String>>,
    at: DocPath,
    lower: bool,
) -> Option<Vec<String>> {
    let list = list.as_ref()?;
    if list.is_empty() {
        v.err(
            at.clone(),
            "empty list: give at least one value or leave the condition out",
        );
    }
    for (i, p) in list.iter().enumerate() {
        if p.len() > MAX_PATTERN_LEN {
            v.err(
                idx(&at, i),
                format!(
                    "pattern is {} characters long, more than {MAX_PATTERN_LEN}",
                    p.len()
                ),
            );
        }
        if p.is_empty() {
            v.err(idx(&at, i), "empty pattern");
        }
    }
    Some(
        list.iter()
            .map(|p| {
                if lower {
                    p.to_ascii_lowercase()
                } else {
                    p.clone()
                }
            })
            .collect(),
    )
}

fn conditions(v: &mut Validator, c: &RawConditions, at: DocPath) -> Option<Conditions> {
    let before = v.errors.len();
    let host = patterns(v, &c.host, key(&at, "host"), true);
    let path = patterns(v, &c.path, key(&at, "path"), false);
    if let Some(paths) = &path {
        for (i, p) in paths.iter().enumerate() {
            if !p.starts_with('/') && !p.starts_with('*') {
                v.err(
                    idx(&key(&at, "path"), i),
                    format!("path pattern {p:?} must start with '/' or '*'"),
                );
            }
        }
    }
    let method = patterns(v, &c.method, key(&at, "method"), false);
    if let Some(methods) = &method {
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                v.err(
                    idx(&key(&at, "method"), i),
                    format!("method {m:?} must be an upper-case token like \"GET\""),
                );
            }
        }
    }
    let mut headers = Vec::new();
    if let Some(map) = &c.headers {
        let at = key(&at, "headers");
        if map.is_empty() {
            v.err(at.clone(), "empty headers condition");
        }
        for (name, values) in map {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                v.err_key(key(&at, name), format!("invalid header name {name:?}"));
            }
            let values =
                patterns(v, &Some(values.clone()), key(&at, name), true).unwrap_or_default();
            headers.push((name.to_ascii_lowercase(), values));
        }
    }
    let query = c.query.as_ref().map(|map| {
        if map.is_empty() {
            v.err(key(&at, "query"), "empty query condition");
        }
        map.iter()
            .map(|(k, val)| (k.clone(), val.to_ascii_lowercase()))
            .collect::<Vec<_>>()
    });
    let source_ip = c.source_ip.as_ref().map(|list| {
        let at = key(&at, "source_ip");
        if list.is_empty() {
            v.err(
                at.clone(),
                "empty list: give at least one CIDR or leave the condition out",
            );
        }
        let mut nets = Vec::new();
        for (i, text) in list.iter().enumerate() {
            match text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(n) => nets.push(n),
                Err(_) => v.err(
                    idx(&at, i),
                    format!("invalid CIDR {text:?}: expected e.g. \"10.0.0.0/8\" or \"::1/128\""),
                ),
            }
        }
        nets
    });
    let conditions = Conditions {
        host,
        path,
        method,
        headers,
        query,
        source_ip,
    };
    let none = conditions.host.is_none()
        && conditions.path.is_none()
        && conditions.method.is_none()
        && conditions.headers.is_empty()
        && c.headers.is_none()
        && conditions.query.is_none()
        && conditions.source_ip.is_none();
    if none {
        v.err(at, "a rule needs at least one condition");
    }
    (v.errors.len() == before).then_some(conditions)
}

fn action(
    v: &mut Validator,
    a: &RawAction,
    at: DocPath,
    protocol: ListenerProtocol,
    groups: &HashMap<&str, GroupProtocol>,
) -> Option<Action> {
    let count =
        a.forward.is_some() as u8 + a.redirect.is_some() as u8 + a.fixed_response.is_some() as u8;
    if count != 1 {
        v.err(
            at,
            "an action needs exactly one of `forward`, `redirect`, `fixed_response`",
        );
        return None;
    }
    if let Some(f) = &a.forward {
        return forward(v, f, key(&at, "forward"), protocol, groups).map(Action::Forward);
    }
    if !protocol.is_http() {
        v.err(
            at,
            format!("a {} listener can only forward", protocol.as_str()),
        );
        return None;
    }
    if let Some(r) = &a.redirect {
        return redirect(v, r, key(&at, "redirect")).map(Action::Redirect);
    }
    let f = a.fixed_response.as_ref().expect("counted above");
    fixed_response(v, f, key(&at, "fixed_response")).map(Action::FixedResponse)
}

/// An action and the login (`authenticate`) beside it.
fn action_and_login(
    v: &mut Validator,
    a: &RawAction,
    at: DocPath,
    protocol: ListenerProtocol,
    groups: &HashMap<&str, GroupProtocol>,
) -> (Option<Action>, Option<crate::config::model::Authenticate>) {
    let names = v.oidc_names.clone();
    let login = oidc::authenticate(v, a.authenticate.as_ref(), at.clone(), protocol, &names);
    (action(v, a, at, protocol, groups), login)
}

fn check_group(
    v: &mut Validator,
    name: &str,
    at: DocPath,
    protocol: ListenerProtocol,
    groups: &HashMap<&str, GroupProtocol>,
) {
    match groups.get(name) {
        None => v.err(at, format!("forward to unknown target group {name:?}")),
        Some(gp) => {
            let fits = match protocol {
                ListenerProtocol::Http | ListenerProtocol::Https => {
                    matches!(gp, GroupProtocol::Http | GroupProtocol::Https)
                }
                ListenerProtocol::Tcp | ListenerProtocol::Tls => *gp == GroupProtocol::Tcp,
            };
            if !fits {
                v.err(
                    at,
                    format!(
                        "a {} listener cannot forward to {} target group {name:?}",
                        protocol.as_str(),
                        gp.as_str()
                    ),
                );
            }
        }
    }
}

fn forward(
    v: &mut Validator,
    f: &RawForward,
    at: DocPath,
    protocol: ListenerProtocol,
    groups: &HashMap<&str, GroupProtocol>,
) -> Option<Forward> {
    let before = v.errors.len();
    let out = match f {
        RawForward::Group(name) => {
            check_group(v, name, at, protocol, groups);
            Forward {
                groups: vec![(name.clone(), 1)],
                stickiness: None,
            }
        }
        RawForward::Weighted(w) => {
            let list = v
                .required(&w.target_groups, &at, "target_groups")
                .map(|l| l.as_slice())
                .unwrap_or(&[]);
            let lat = key(&at, "target_groups");
            if w.target_groups.is_some() && list.is_empty() {
                v.err(lat.clone(), "empty target_groups");
            }
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            for (i, g) in list.iter().enumerate() {
                let gat = idx(&lat, i);
                let Some(name) = v.required(&g.name, &gat, "name").cloned() else {
                    continue;
                };
                check_group(v, &name, key(&gat, "name"), protocol, groups);
                if !seen.insert(name.clone()) {
                    v.err(
                        key(&gat, "name"),
                        format!("target group {name:?} listed twice"),
                    );
                }
                let weight = v.int_in(g.weight, key(&gat, "weight"), 1, 0, 999) as u32;
                out.push((name, weight));
            }
            if !out.is_empty() && out.iter().all(|(_, w)| *w == 0) {
                v.err(lat, "every weight is 0: no request could be forwarded");
            }
            let stickiness = w.stickiness.as_ref().map(|_| {
                v.duration_in(
                    &w.stickiness,
                    key(&at, "stickiness"),
                    Duration::from_secs(3600),
                    Duration::from_secs(1),
                    Duration::from_secs(7 * 86400),
                )
            });
            if stickiness.is_some() && !protocol.is_http() {
                v.err(
                    key(&at, "stickiness"),
                    "group stickiness needs an http or https listener",
                );
            }
            Forward {
                groups: out,
                stickiness,
            }
        }
    };
    (v.errors.len() == before).then_some(out)
}

fn redirect(v: &mut Validator, r: &RawRedirect, at: DocPath) -> Option<Redirect> {
    let before = v.errors.len();
    if let Some(p) = &r.protocol
        && !matches!(p.as_str(), "http" | "https" | "#{protocol}")
    {
        v.err(
            key(&at, "protocol"),
            format!("redirect protocol {p:?} must be \"http\", \"https\" or \"#{{protocol}}\""),
        );
    }
    if let Some(p) = &r.port
        && p != "#{port}"
        && !matches!(p.parse::<u16>(), Ok(1..))
    {
        v.err(
            key(&at, "port"),
            format!("redirect port {p:?} must be 1..65535 or \"#{{port}}\""),
        );
    }
    if let Some(h) = &r.host
        && (h.is_empty()
            || h.bytes().any(|b| {
                b.is_ascii_whitespace()
                    || b.is_ascii_control()
                    || b == b'/'
                    || b == b'?'
                    || b == b'#' && !h.contains("#{")
            }))
    {
        v.err(key(&at, "host"), format!("invalid redirect host {h:?}"));
    }
    if let Some(p) = &r.path
        && !p.starts_with('/')
    {
        v.err(
            key(&at, "path"),
            format!("redirect path {p:?} must start with '/'"),
        );
    }
    for (k, val) in [("host", &r.host), ("path", &r.path), ("query", &r.query)] {
        if let Some(val) = val {
            if val.bytes().any(|b| b.is_ascii_control()) {
                v.err(key(&at, k), "control characters are not allowed");
            }
            if val.len() > MAX_PATTERN_LEN {
                v.err(
                    key(&at, k),
                    format!("longer than {MAX_PATTERN_LEN} characters"),
                );
            }
        }
    }
    let status = v.int_in(r.status, key(&at, "status"), 301, 301, 302);
    let keeps = |part: &Option<String>, own: &str| part.as_deref().is_none_or(|p| p == own);
    if keeps(&r.protocol, "#{protocol}")
        && keeps(&r.host, "#{host}")
        && keeps(&r.port, "#{port}")
        && keeps(&r.path, "/#{path}")
        && keeps(&r.query, "#{query}")
    {
        v.err(at, "redirect to the same URL (a loop): change at least one of protocol, host, port, path, query");
    }
    let out = Redirect {
        protocol: r.protocol.clone(),
        host: r.host.clone(),
        port: r.port.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        status: status as u16,
    };
    (v.errors.len() == before).then_some(out)
}

fn fixed_response(v: &mut Validator, f: &RawFixedResponse, at: DocPath) -> Option<FixedResponse> {
    let before = v.errors.len();
    let status = v.required(&f.status, &at, "status").copied().unwrap_or(200);
    if !(200..=599).contains(&status) {
        v.err(
            key(&at, "status"),
            format!("status {status} is out of range 200..=599"),
        );
    }
    let content_type = f
        .content_type
        .clone()
        .unwrap_or_else(|| "text/plain".to_owned());
    if http::HeaderValue::from_str(&content_type).is_err() || content_type.is_empty() {
        v.err(
            key(&at, "content_type"),
            format!("invalid content type {content_type:?}"),
        );
    }
    let body = f.body.clone().unwrap_or_default();
    if body.len() > MAX_FIXED_BODY {
        v.err(
            key(&at, "body"),
            format!("body is {} bytes, more than {MAX_FIXED_BODY}", body.len()),
        );
    }
    let out = FixedResponse {
        status: status.clamp(200, 599) as u16,
        content_type,
        body,
    };
    (v.errors.len() == before).then_some(out)
}

fn target_groups(v: &mut Validator, raw: &[RawGroup]) -> Vec<TargetGroup> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, g) in raw.iter().enumerate() {
        let at = vec![Seg::Key("target_groups".into()), Seg::Index(i)];
        let name = v
            .required(&g.name, &at, "name")
            .cloned()
            .unwrap_or_default();
        if g.name.is_some() {
            if name.is_empty() {
                v.err(key(&at, "name"), "target group name is empty");
            } else if !names.insert(name.clone()) {
                v.err(
                    key(&at, "name"),
                    format!("duplicate target group name {name:?}"),
                );
            }
        }
        let protocol = match v.required(&g.protocol, &at, "protocol").map(String::as_str) {
            None | Some("http") => GroupProtocol::Http,
            Some("https") => GroupProtocol::Https,
            Some("tcp") => GroupProtocol::Tcp,
            Some(other) => {
                v.err(
                    key(&at, "protocol"),
                    format!("unknown protocol {other:?}: expected \"http\", \"https\" or \"tcp\""),
                );
                GroupProtocol::Http
            }
        };
        let protocol_version = match g.protocol_version.as_deref() {
            None | Some("http1") => ProtocolVersion::Http1,
            Some("http2") => ProtocolVersion::Http2,
            Some("grpc") => ProtocolVersion::Grpc,
            Some(other) => {
                v.err(
                    key(&at, "protocol_version"),
                    format!("unknown protocol_version {other:?}: expected \"http1\", \"http2\" or \"grpc\""),
                );
                ProtocolVersion::Http1
            }
        };
        if g.protocol_version.is_some() && protocol == GroupProtocol::Tcp {
            v.err(
                key(&at, "protocol_version"),
                "protocol_version applies to http and https target groups only",
            );
        }
        let algorithm = match g.algorithm.as_deref() {
            None | Some("weighted_round_robin") => Algorithm::WeightedRoundRobin,
            Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
            Some(other) => {
                v.err(key(&at, "algorithm"), format!("unknown algorithm {other:?}: expected \"weighted_round_robin\" or \"least_outstanding_requests\""));
                Algorithm::WeightedRoundRobin
            }
        };
        let slow_start = v.duration(&g.slow_start, key(&at, "slow_start"), Duration::ZERO);
        if slow_start != Duration::ZERO
            && !(Duration::from_secs(30)..=Duration::from_secs(900)).contains(&slow_start)
        {
            v.err(
                key(&at, "slow_start"),
                "slow_start must be 0s or between 30s and 900s",
            );
        }
        let deregistration_delay = v.duration_in(
            &g.deregistration_delay,
            key(&at, "deregistration_delay"),
            Duration::from_secs(30),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let request_timeout = v.duration_in(
            &g.request_timeout,
            key(&at, "request_timeout"),
            Duration::from_secs(60),
            Duration::from_millis(1),
            Duration::from_secs(4000),
        );
        let connect_timeout = v.duration_in(
            &g.connect_timeout,
            key(&at, "connect_timeout"),
            Duration::from_secs(5),
            Duration::from_millis(1),
            Duration::from_secs(600),
        );
        if g.ca_file.is_some() && protocol != GroupProtocol::Https {
            v.err(
                key(&at, "ca_file"),
                "ca_file applies to https target groups only",
            );
        }
        let ca_file = g
            .ca_file
            .as_ref()
            .map(|p| v.readable_file(p, key(&at, "ca_file")));
        if g.tls_verify.is_some() && protocol != GroupProtocol::Https {
            v.err(
                key(&at, "tls_verify"),
                "tls_verify applies to https target groups only",
            );
        }
        let stickiness = g
            .stickiness
            .as_ref()
            .and_then(|s| stickiness(v, s, key(&at, "stickiness"), protocol));
        let (targets, dns) = targets(v, g.targets.as_deref().unwrap_or(&[]), key(&at, "targets"));
        let health_check = health_check(
            v,
            g.health_check.as_ref(),
            key(&at, "health_check"),
            protocol,
            protocol_version,
        );
        out.push(TargetGroup {
            name,
            protocol,
            protocol_version,
            algorithm,
            slow_start,
            deregistration_delay,
            request_timeout,
            connect_timeout,
            fail_open: g.fail_open.unwrap_or(true),
            ca_file,
            tls_verify: g.tls_verify.unwrap_or(true),
            stickiness,
            targets,
            dns,
            health_check,
        });
    }
    out
}

fn stickiness(
    v: &mut Validator,
    s: &RawStickiness,
    at: DocPath,
    protocol: GroupProtocol,
) -> Option<Stickiness> {
    if protocol == GroupProtocol::Tcp {
        v.err(
            at.clone(),
            "stickiness applies to http and https target groups only",
        );
    }
    let duration = v.duration_in(
        &s.duration,
        key(&at, "duration"),
        Duration::from_secs(86400),
        Duration::from_secs(1),
        Duration::from_secs(7 * 86400),
    );
    match v.required(&s.kind, &at, "type").map(String::as_str) {
        Some("lb_cookie") => {
            if s.cookie.is_some() {
                v.err(
                    key(&at, "cookie"),
                    "`cookie` applies to type = \"app_cookie\" only",
                );
            }
            Some(Stickiness::LbCookie { duration })
        }
        Some("app_cookie") => {
            let cookie = v.required(&s.cookie, &at, "cookie").cloned()?;
            let valid = !cookie.is_empty()
                && cookie
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                v.err(
                    key(&at, "cookie"),
                    format!("invalid cookie name {cookie:?}"),
                );
            } else if cookie.starts_with("EDGELB") {
                v.err(
                    key(&at, "cookie"),
                    "cookie names starting with EDGELB are edgelb's own",
                );
            }
            Some(Stickiness::AppCookie { cookie, duration })
        }
        Some(other) => {
            v.err(
                key(&at, "type"),
                format!(
                    "unknown stickiness type {other:?}: expected \"lb_cookie\" or \"app_cookie\""
                ),
            );
            None
        }
        None => None,
    }
}

/// Splits `host:port` / `[v6]:port`; the port must be 1..=65535.
pub fn split_host_port(text: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("port 0 is out of range 1..=65535 in {text:?}"));
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("invalid address {text:?}: expected HOST:PORT"));
    };
    let port: u16 = match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => {
            return Err(format!(
                "port {port:?} is out of range 1..=65535 in {text:?}"
            ));
        }
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    if !valid_host {
        return Err(format!("invalid host {host:?} in {text:?}"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn targets(v: &mut Validator, raw: &[RawTarget], at: DocPath) -> (Vec<TargetSpec>, Vec<DnsSource>) {
    let mut out: Vec<TargetSpec> = Vec::new();
    let mut sources: Vec<DnsSource> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let at = idx(&at, i);
        let weight = v.int_in(t.weight, key(&at, "weight"), 1, 0, 1000) as u32;
        let kinds = [t.address.is_some(), t.dns.is_some(), t.srv.is_some()];
        if kinds.iter().filter(|k| **k).count() > 1 {
            v.err(at.clone(), "a target has one of `address`, `dns` or `srv`");
            continue;
        }
        if t.address.is_none() && (t.dns.is_some() || t.srv.is_some()) {
            if let Some(source) = dns_source(v, t, &at, weight) {
                if sources.contains(&source) {
                    v.err(at.clone(), "duplicate DNS target in this group");
                } else {
                    sources.push(source);
                }
            }
            continue;
        }
        if t.port.is_some() {
            v.err(
                key(&at, "port"),
                "`port` goes with `dns`; an `address` has its own port",
            );
        }
        let Some(address) = v.required(&t.address, &at, "address").cloned() else {
            continue;
        };
        match split_host_port(&address) {
            Err(e) => v.err(key(&at, "address"), e),
            Ok((host, port)) => {
                if out.iter().any(|o| o.address == address) {
                    v.err(
                        key(&at, "address"),
                        format!("duplicate target {address:?} in this group"),
                    );
                    continue;
                }
                out.push(TargetSpec::configured(address, host, port, weight));
            }
        }
    }
    (out, sources)
}

/// A `{ dns = NAME, port, weight }` or `{ srv = NAME }` target.
fn dns_source(v: &mut Validator, t: &RawTarget, at: &[Seg], weight: u32) -> Option<DnsSource> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 253
            && name.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if let Some(name) = &t.srv {
        if t.port.is_some() || t.weight.is_some() {
            v.err(
                at.to_vec(),
                "an `srv` target takes its port and weight from the SRV records",
            );
            return None;
        }
        if !valid_name(name) {
            v.err(key(at, "srv"), format!("invalid DNS name {name:?}"));
            return None;
        }
        return Some(DnsSource::Srv {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
        });
    }
    let name = t.dns.as_deref().unwrap_or_default();
    if !valid_name(name) {
        v.err(key(at, "dns"), format!("invalid DNS name {name:?}"));
        return None;
    }
    let port = v.required(&t.port, at, "port").copied()?;
    if !(1..=65535).contains(&port) {
        v.err(key(at, "port"), format!("{port} is out of range 1..=65535"));
        return None;
    }
    Some(DnsSource::Hosts {
        name: name.trim_end_matches('.').to_ascii_lowercase(),
        port: port as u16,
        weight,
    })
}

/// Parses a matcher: `"200"`, `"200,202"`, `"200-299"`, mixes.
pub fn parse_matcher(text: &str) -> Result<Vec<(u16, u16)>, String> {
    parse_codes(text, 100..=599, "100..599 like \"200,202\" or \"200-299\"")
}

/// Parses a gRPC check's matcher: gRPC status codes, `"0"`, `"0-2,12"`.
pub fn parse_grpc_matcher(text: &str) -> Result<Vec<(u16, u16)>, String> {
    parse_codes(
        text,
        0..=16,
        "0..16 (gRPC status codes) like \"0\" or \"0-2,12\"",
    )
}

fn parse_codes(
    text: &str,
    allowed: std::ops::RangeInclusive<u16>,
    expected: &str,
) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("invalid matcher {text:?}: expected codes and ranges in {expected}");
    let code = |s: &str| s.trim().parse::<u16>().ok().filter(|c| allowed.contains(c));
    let mut out = Vec::new();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((a, b)) => (code(a).ok_or_else(bad)?, code(b).ok_or_else(bad)?),
            None => {
                let c = code(part).ok_or_else(bad)?;
                (c, c)
            }
        };
        if range.0 > range.1 {
            return Err(bad());
        }
        out.push(range);
    }
    Ok(out)
}

fn health_check(
    v: &mut Validator,
    raw: Option<&RawHealthCheck>,
    at: DocPath,
    group: GroupProtocol,
    version: ProtocolVersion,
) -> HealthCheck {
    let empty = RawHealthCheck::default();
    let raw = raw.unwrap_or(&empty);
    // A gRPC check speaks HTTP/2 over the group's own transport.
    let grpc = match raw.protocol.as_deref() {
        Some("grpc") => true,
        None => version == ProtocolVersion::Grpc,
        Some(_) => false,
    };
    let protocol = match raw.protocol.as_deref() {
        None => group,
        Some("grpc") if group == GroupProtocol::Tcp => {
            v.err(
                key(&at, "protocol"),
                "a grpc health check needs an http or https target group",
            );
            group
        }
        Some("grpc") => group,
        Some("http") => GroupProtocol::Http,
        Some("https") => GroupProtocol::Https,
        Some("tcp") => GroupProtocol::Tcp,
        Some(other) => {
            v.err(key(&at, "protocol"), format!("unknown health check protocol {other:?}: expected \"http\", \"https\", \"tcp\" or \"grpc\""));
            group
        }
    };
    if raw.grpc_service.is_some() && !grpc {
        v.err(
            key(&at, "grpc_service"),
            "grpc_service applies to protocol = \"grpc\" health checks only",
        );
    }
    let port = match &raw.port {
        None => HealthPort::TrafficPort,
        Some(RawPort::Named(s)) if s == "traffic-port" => HealthPort::TrafficPort,
        Some(RawPort::Named(s)) => {
            v.err(
                key(&at, "port"),
                format!("port {s:?}: expected \"traffic-port\" or a number 1..65535"),
            );
            HealthPort::TrafficPort
        }
        Some(RawPort::Number(n)) => match u16::try_from(*n) {
            Ok(p) if p > 0 => HealthPort::Port(p),
            _ => {
                v.err(
                    key(&at, "port"),
                    format!("port {n} is out of range 1..=65535"),
                );
                HealthPort::TrafficPort
            }
        },
    };
    let default_path = if grpc {
        "/grpc.health.v1.Health/Check"
    } else {
        "/"
    };
    let path = raw.path.clone().unwrap_or_else(|| default_path.to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        v.err(
            key(&at, "path"),
            format!("health check path {path:?} must start with '/' and hold no spaces"),
        );
    }
    let interval = v.duration_in(
        &raw.interval,
        key(&at, "interval"),
        Duration::from_secs(10),
        Duration::from_secs(1),
        Duration::from_secs(300),
    );
    // Without an explicit timeout, a short interval gets a timeout that fits it.
    let default_timeout = Duration::from_secs(5).min(interval / 2);
    let timeout = v.duration_in(
        &raw.timeout,
        key(&at, "timeout"),
        default_timeout,
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    if raw.timeout.is_some() && timeout >= interval {
        v.err(
            key(&at, "timeout"),
            format!(
                "timeout {} must be shorter than interval {}",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
    let healthy_threshold = v.int_in(
        raw.healthy_threshold,
        key(&at, "healthy_threshold"),
        3,
        1,
        10,
    ) as u32;
    let unhealthy_threshold = v.int_in(
        raw.unhealthy_threshold,
        key(&at, "unhealthy_threshold"),
        2,
        1,
        10,
    ) as u32;
    let (default_matcher, parse): (_, fn(&str) -> Result<_, _>) = if grpc {
        ((0, 0), parse_grpc_matcher)
    } else {
        ((200, 399), parse_matcher)
    };
    let matcher = match &raw.matcher {
        None => vec![default_matcher],
        Some(m) => parse(m).unwrap_or_else(|e| {
            v.err(key(&at, "matcher"), e);
            vec![default_matcher]
        }),
    };
    HealthCheck {
        protocol,
        port,
        path,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
        matcher,
        grpc_service: grpc.then(|| raw.grpc_service.clone().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_api_binds_loopback_by_default() {
        let mut v = Validator {
            base_dir: Path::new("/"),
            errors: Vec::new(),
            warnings: Vec::new(),
            acme_configured: false,
            oidc_names: Vec::new(),
        };
        let admin = admin(&mut v, None);
        assert!(v.errors.is_empty());
        assert!(admin.bind.ip().is_loopback());
        assert_eq!(admin.bind.port(), 9901);
        assert!(admin.token_file.is_none());
    }

    #[test]
    fn matcher_forms() {
        assert_eq!(parse_matcher("200").unwrap(), vec![(200, 200)]);
        assert_eq!(
            parse_matcher("200,202").unwrap(),
            vec![(200, 200), (202, 202)]
        );
        assert_eq!(
            parse_matcher("200-299,302").unwrap(),
            vec![(200, 299), (302, 302)]
        );
        for bad in ["", "abc", "99", "600", "300-200", "200-", "200,,201"] {
            assert!(parse_matcher(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("10.0.0.1:80").unwrap(),
            ("10.0.0.1".into(), 80)
        );
        assert_eq!(split_host_port("[::1]:8080").unwrap(), ("::1".into(), 8080));
        assert_eq!(
            split_host_port("App-2.internal:8080").unwrap(),
            ("app-2.internal".into(), 8080)
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "host:70000",
            ":80",
            "a b:80",
            "-a:80",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }
}

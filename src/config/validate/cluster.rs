//! `[cluster]` (SPEC §11): the etcd endpoints, the prefix, this node's name
//! and the files it keeps; and the rule that a node's local file in cluster
//! mode holds no listeners or groups (they are pushed to etcd).

use super::{Validator, key};
use crate::config::model::{Cluster, EtcdEndpoint};
use crate::config::schema::{RawCluster, RawConfig};
use crate::config::span::Seg;

/// The prefix when none is given.
pub const DEFAULT_PREFIX: &str = "/edgelb";

pub(super) fn cluster(v: &mut Validator, raw: &RawConfig) -> Option<Cluster> {
    let c = raw.cluster.as_ref()?;
    let at = vec![Seg::Key("cluster".into())];
    for (name, present) in [
        ("listeners", !raw.listeners.is_empty()),
        ("target_groups", !raw.target_groups.is_empty()),
    ] {
        if present {
            v.err_key(
                vec![Seg::Key(name.into())],
                format!(
                    "`{name}` in a cluster node's local file: in cluster mode they live in etcd \
                     (`edgelb cluster push`); the local file keeps [global], [admin] and [cluster]"
                ),
            );
        }
    }
    if raw.global.as_ref().is_some_and(|g| g.state_file.is_some()) {
        v.warn(
            vec![Seg::Key("global".into()), Seg::Key("state_file".into())],
            "global.state_file is not used in cluster mode: registrations live in etcd",
        );
    }
    Some(Cluster {
        etcd: endpoints(v, c, &at),
        prefix: prefix(v, c, &at),
        node_name: node_name(v, c, &at),
        cache_file: c.cache_file.as_deref().map(|p| v.path(p)),
        ca_file: c
            .ca_file
            .as_deref()
            .map(|p| v.readable_file(p, key(&at, "ca_file"))),
        client_cert: client_cert(v, c, &at),
        bind_ip: c.bind_ip.as_deref().and_then(|ip| match ip.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                v.err(key(&at, "bind_ip"), format!("invalid IP address {ip:?}"));
                None
            }
        }),
    })
}

fn endpoints(v: &mut Validator, c: &RawCluster, at: &[Seg]) -> Vec<EtcdEndpoint> {
    let Some(list) = v.required(&c.etcd, at, "etcd").cloned() else {
        return Vec::new();
    };
    if list.is_empty() {
        v.err(key(at, "etcd"), "the list of etcd endpoints is empty");
    }
    let mut out = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match endpoint(text) {
            Ok(e) => out.push(e),
            Err(e) => v.err(super::idx(&key(at, "etcd"), i), e),
        }
    }
    out
}

/// `http://host:port` or `https://host:port` (port 2379 when left out).
pub(super) fn endpoint(text: &str) -> Result<EtcdEndpoint, String> {
    let (tls, rest) = if let Some(r) = text.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = text.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "etcd endpoint {text:?} must start with http:// or https://"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "etcd endpoint {text:?}: expected http(s)://HOST:PORT"
        ));
    }
    let (host, port) = match crate::config::split_host_port(rest) {
        Ok(hp) => hp,
        Err(_) => (rest.trim_matches(['[', ']']).to_owned(), 2379),
    };
    Ok(EtcdEndpoint {
        tls,
        authority: if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        },
        host,
        port,
    })
}

fn prefix(v: &mut Validator, c: &RawCluster, at: &[Seg]) -> String {
    let text = c.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
    let trimmed = text.trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.len() < 2 || trimmed.chars().any(char::is_whitespace) {
        v.err(
            key(at, "prefix"),
            format!("prefix {text:?} must start with `/`, name something and hold no spaces"),
        );
    }
    trimmed.to_owned()
}

fn node_name(v: &mut Validator, c: &RawCluster, at: &[Seg]) -> String {
    let name = c.node_name.clone().unwrap_or_else(host_name);
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
    {
        v.err(
            key(at, "node_name"),
            format!("node_name {name:?}: use letters, digits, `-`, `_` and `.`"),
        );
    }
    name
}

/// The machine's host name (the default node name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn client_cert(
    v: &mut Validator,
    c: &RawCluster,
    at: &[Seg],
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    match (&c.cert_file, &c.key_file) {
        (None, None) => None,
        (Some(cert), Some(k)) => Some((
            v.readable_file(cert, key(at, "cert_file")),
            v.readable_file(k, key(at, "key_file")),
        )),
        (Some(_), None) => {
            v.err(key(at, "cert_file"), "cert_file needs key_file beside it");
            None
        }
        (None, Some(_)) => {
            v.err(key(at, "key_file"), "key_file needs cert_file beside it");
            None
        }
    }
}

/// The errors of a shared document (`{prefix}/config`): the sections each
/// node keeps in its own file have no place in it.
pub(super) fn shared_document(v: &mut Validator, raw: &RawConfig) {
    for (name, present) in [
        ("global", raw.global.is_some()),
        ("admin", raw.admin.is_some()),
        ("cluster", raw.cluster.is_some()),
    ] {
        if present {
            v.err_key(
                vec![Seg::Key(name.into())],
                format!("[{name}] in the shared configuration: it stays in each node's local file"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoint_forms() {
        let e = endpoint("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            (e.tls, e.authority.as_str(), e.port),
            (false, "127.0.0.1:2379", 2379)
        );
        let e = endpoint("https://etcd.internal").unwrap();
        assert_eq!((e.tls, e.authority.as_str()), (true, "etcd.internal:2379"));
        let e = endpoint("http://[::1]:23790/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:23790")
        );
        assert!(endpoint("127.0.0.1:2379").is_err());
        assert!(endpoint("http://host:1/v3").is_err());
    }
}

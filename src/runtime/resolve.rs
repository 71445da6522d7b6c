//! Resolving target host names when a snapshot is built.

use crate::config::Config;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Resolved addresses by target address text (as configured).
pub type Resolved = HashMap<String, SocketAddr>;

/// Resolves every target of `config`; IP literals need no lookup. A name that
/// does not resolve fails the whole load, naming the group and target.
pub async fn resolve_targets(config: &Config) -> Result<Resolved, String> {
    let mut out = Resolved::new();
    for group in &config.target_groups {
        for t in &group.targets {
            if out.contains_key(&t.address) {
                continue;
            }
            let addr = match t.host.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, t.port),
                Err(_) => {
                    let mut found = tokio::net::lookup_host((t.host.as_str(), t.port))
                        .await
                        .map_err(|e| {
                            format!(
                                "target group {:?}: cannot resolve {}: {e}",
                                group.name, t.address
                            )
                        })?;
                    // Prefer IPv4 when a name has both, as most targets listen there.
                    let all: Vec<SocketAddr> = found.by_ref().collect();
                    all.iter()
                        .find(|a| a.is_ipv4())
                        .or(all.first())
                        .copied()
                        .ok_or_else(|| {
                            format!(
                                "target group {:?}: {} resolves to no address",
                                group.name, t.address
                            )
                        })?
                }
            };
            out.insert(t.address.clone(), addr);
        }
    }
    Ok(out)
}

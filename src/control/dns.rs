//! The DNS watch (SPEC §12): asks every `dns`/`srv` source of the
//! configuration again when its answer's TTL runs out, and installs a changed
//! target set through the same path as a registration (a rebuilt snapshot:
//! new addresses start `initial`, vanished ones drain, kept ones keep their
//! health, pools and stickiness; other groups are not touched). What answers
//! mean is `runtime::dns`'s; the lookups are hickory's resolver's.

use super::server::Server;
use crate::config::{Config, DnsSource, Origin, TargetSpec};
use crate::runtime::dns::{DnsAnswers, Lookup, MAX_TTL};
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long one query may take before it counts as a failure.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A resolver asking `servers` (none: /etc/resolv.conf's), without a cache
/// of its own: every answer's TTL is [`DnsAnswers`]'s to keep.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio().map_err(|e| format!("/etc/resolv.conf: {e}"))?
    } else {
        let name_servers: Vec<NameServerConfig> = servers
            .iter()
            .flat_map(|&addr| {
                [Protocol::Udp, Protocol::Tcp].map(|protocol| {
                    let mut ns = NameServerConfig::new(addr, protocol);
                    ns.trust_negative_responses = true;
                    ns
                })
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            TokioConnectionProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = 1;
    Ok(builder.build())
}

/// Runs until the server goes: asks the due sources (each lookup on its
/// own, so a slow one delays no other), records the answers as they come,
/// installs what changed, and sleeps until the next is due, an answer comes
/// or the configuration changes.
pub async fn watch(server: Weak<Server>) {
    let mut current: Option<(Vec<SocketAddr>, TokioResolver)> = None;
    let mut file: Option<Arc<Config>> = None;
    let mut sources: Vec<(String, DnsSource)> = Vec::new();
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    // Longest a lookup can take (a try per server, each within the timeout).
    let pending = QUERY_TIMEOUT * 4;
    loop {
        let Some(strong) = server.upgrade() else {
            return;
        };
        let mut changed = false;
        let latest = strong.file_config();
        if file.as_ref().is_none_or(|f| !Arc::ptr_eq(f, &latest)) {
            // The configuration changed (or this is the start): its sources.
            sources = DnsAnswers::sources(&latest);
            for (group, _) in &sources {
                // The series of a group with DNS sources exist from the start.
                strong.metrics.dns_resolutions(group);
            }
            let servers = &latest.global.resolvers;
            if current.as_ref().is_none_or(|(s, _)| s != servers) {
                match resolver(servers) {
                    Ok(r) => current = Some((servers.clone(), r)),
                    Err(e) => tracing::error!("DNS targets cannot be resolved: {e}"),
                }
            }
            changed |= strong.dns().retain(&sources);
            file = Some(latest);
        }
        if let Some((_, resolver)) = &current {
            let now = Instant::now();
            let due: Vec<&(String, DnsSource)> = {
                let dns = strong.dns();
                sources.iter().filter(|s| dns.is_due(s, now)).collect()
            };
            for (group, source) in due {
                strong.dns().asked(group, source, now, pending);
                let (resolver, answers) = (resolver.clone(), answers.clone());
                let (group, source) = (group.clone(), source.clone());
                tokio::spawn(async move {
                    let lookup = lookup(&resolver, &source).await;
                    let _ = answers.send((group, source, lookup));
                });
            }
        }
        while let Ok((group, source, lookup)) = answered.try_recv() {
            changed |= record(&strong, &sources, group, source, lookup);
        }
        if changed && let Err(e) = strong.apply_dns().await {
            tracing::error!("DNS targets changed but could not be applied: {e}");
        }
        let next = strong
            .dns()
            .next_due()
            .unwrap_or_else(|| Instant::now() + MAX_TTL);
        let reloaded = strong.dns_sources_changed();
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = reloaded.notified() => {}
            Some((group, source, lookup)) = answered.recv() => {
                // Recorded with the others that came meanwhile, next turn.
                let _ = answers.send((group, source, lookup));
            }
        }
    }
}

/// Counts and records one answer; whether the group's targets changed. An
/// answer for a source the configuration no longer has is dropped.
fn record(
    server: &Server,
    sources: &[(String, DnsSource)],
    group: String,
    source: DnsSource,
    lookup: Lookup,
) -> bool {
    if !sources.iter().any(|(g, s)| *g == group && *s == source) {
        return false;
    }
    let [success, empty, error] = server.metrics.dns_resolutions(&group);
    match lookup {
        Lookup::Found(..) => success.inc(),
        Lookup::Empty => empty.inc(),
        Lookup::Failed => {
            error.inc();
            tracing::warn!(target_group = %group, source = %source.origin(), "DNS lookup failed; the last answer is kept");
        }
    }
    server.dns().record(&group, &source, lookup, Instant::now())
}

/// One lookup of a source: its targets, or why there are none.
pub async fn lookup(resolver: &TokioResolver, source: &DnsSource) -> Lookup {
    let now = Instant::now();
    match source {
        DnsSource::Hosts { name, port, weight } => {
            let found = match resolver.lookup_ip(fqdn(name)).await {
                Ok(found) => found,
                Err(e) => return failure(&e),
            };
            let ttl = found.valid_until().saturating_duration_since(now);
            let targets = found
                .iter()
                .map(|ip| target(SocketAddr::new(ip, *port), *weight, 0, source.origin()))
                .collect::<Vec<_>>();
            if targets.is_empty() {
                return Lookup::Empty;
            }
            Lookup::Found(targets, ttl)
        }
        DnsSource::Srv { name } => {
            let records = match resolver.srv_lookup(fqdn(name)).await {
                Ok(records) => records,
                Err(e) => return failure(&e),
            };
            let mut until = records.as_lookup().valid_until();
            let mut targets = Vec::new();
            let mut failed = false;
            for srv in records.iter() {
                let ips = match resolver.lookup_ip(srv.target().to_string()).await {
                    Ok(ips) => ips,
                    Err(e) => {
                        failed |= failure(&e) == Lookup::Failed;
                        continue;
                    }
                };
                until = until.min(ips.valid_until());
                let weight = u32::from(srv.weight()).clamp(1, 1000);
                for ip in ips.iter() {
                    let addr = SocketAddr::new(ip, srv.port());
                    targets.push(target(addr, weight, srv.priority(), source.origin()));
                }
            }
            match (targets.is_empty(), failed) {
                // A host of the records could not be looked up: nothing learned.
                (true, true) => Lookup::Failed,
                (true, false) => Lookup::Empty,
                _ => Lookup::Found(targets, until.saturating_duration_since(now)),
            }
        }
    }
}

/// The name as a fully qualified one: no search domains are tried.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn target(addr: SocketAddr, weight: u32, tier: u16, origin: Origin) -> TargetSpec {
    TargetSpec {
        origin,
        tier,
        ..TargetSpec::configured(addr.to_string(), addr.ip().to_string(), addr.port(), weight)
    }
}

/// NXDOMAIN and "no record of that type" are an empty answer; anything else
/// (a timeout, SERVFAIL, a refusal, no server) teaches nothing.
fn failure(e: &ResolveError) -> Lookup {
    if let Some(proto) = e.proto()
        && let ProtoErrorKind::NoRecordsFound { response_code, .. } = proto.kind()
        && matches!(
            response_code,
            ResponseCode::NXDomain | ResponseCode::NoError
        )
    {
        return Lookup::Empty;
    }
    Lookup::Failed
}

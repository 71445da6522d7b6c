//! Building a snapshot from a validated config, carrying target state over from
//! the previous one.

use super::listener::ListenerRuntime;
use super::resolve::Resolved;
use super::target::{GroupRuntime, Target, TargetShared};
use crate::balance::cookie::CookieKeys;
use crate::balance::sticky::GroupStickiness;
use crate::config::GroupProtocol;
use crate::config::{self, Action, Config, ListenerProtocol};
use crate::health::HealthState;
use crate::route::conditions::Conditions;
use crate::route::redirect::RedirectAction;
use crate::route::{FixedAction, ForwardAction};
use crate::runtime::listener::{CompiledRule, GroupChoice, RouteAction, RuleTable};
use crate::telemetry::metrics::Metrics;
use crate::tls::LoadedCert;
use crate::tls::TargetTls;
use crate::tls::acme::AcmeCerts;
use crate::tls::client::{client_config, server_name};
use crate::tls::client_auth::Mode;
use crate::tls::server::{ListenerCerts, SessionState, challenge_config, server_config};
use http::HeaderValue;
use rustls::pki_types::ServerName;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Everything a request needs to be routed, immutable once built.
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub listeners: Vec<Arc<ListenerRuntime>>,
    pub groups: Vec<Arc<GroupRuntime>>,
}

impl Snapshot {
    /// The listener called `name`. Names built from the running listener set
    /// share their allocation, so the first comparison is usually a pointer test.
    #[inline]
    pub fn listener(&self, name: &Arc<str>) -> Option<&Arc<ListenerRuntime>> {
        self.listeners
            .iter()
            .find(|l| Arc::ptr_eq(&l.name, name))
            .or_else(|| self.listeners.iter().find(|l| l.name == *name))
    }

    /// The target group called `name`.
    pub fn group(&self, name: &str) -> Option<&Arc<GroupRuntime>> {
        self.groups.iter().find(|g| &*g.name == name)
    }

    /// Target state by (group, address), for the next snapshot to carry over.
    fn shared_states(&self) -> HashMap<(&str, &str), &Arc<TargetShared>> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.targets
                    .iter()
                    .map(move |t| ((&*g.name, &*t.address), &t.shared))
            })
            .collect()
    }
}

/// A target on its way out: no new requests until `until`, then dropped.
#[derive(Clone)]
pub struct DrainingTarget {
    pub group: String,
    pub address: Arc<str>,
    pub addr: std::net::SocketAddr,
    pub origin: crate::config::Origin,
    pub shared: Arc<TargetShared>,
    pub until: std::time::Instant,
}

/// What every snapshot build needs from the server besides the config.
#[derive(Clone, Copy)]
pub struct BuildContext<'a> {
    pub access_log: &'a Option<Arc<crate::telemetry::access_log::AccessLog>>,
    /// Targets removed from the file (or deregistered) that still drain.
    pub draining: &'a [DrainingTarget],
    pub resolved: &'a Resolved,
    pub metrics: &'a Metrics,
    pub cookie_keys: &'a Arc<CookieKeys>,
    pub sessions: &'a SessionState,
    /// ACME certificates issued so far, and the tls-alpn-01 challenges.
    pub acme: &'a AcmeCerts,
    /// OpenID Providers and what logins share (SPEC §9).
    pub logins: &'a crate::oidc::gate::Logins,
}

/// Builds the snapshot of `config`. Targets that `previous` has too (same group,
/// same address) keep their shared state; `names` are the running listeners'
/// names, reused so lookups compare pointers.
pub fn build<'a>(
    config: Arc<Config>,
    generation: u64,
    previous: Option<&Snapshot>,
    names: impl Iterator<Item = &'a Arc<str>> + Clone,
    ctx: &BuildContext,
) -> Result<Snapshot, String> {
    let BuildContext {
        access_log,
        draining,
        resolved,
        metrics,
        cookie_keys,
        sessions,
        acme,
        logins,
    } = *ctx;
    let carried = previous.map(|p| p.shared_states()).unwrap_or_default();
    let used = used_groups(&config);
    let groups: Vec<Arc<GroupRuntime>> = config
        .target_groups
        .iter()
        .map(|g| {
            let tls_config = (g.protocol == GroupProtocol::Https
                || g.health_check.protocol == GroupProtocol::Https)
                .then(|| client_config(g))
                .transpose()?
                .map(|config| {
                    let mut h2 = (*config).clone();
                    h2.alpn_protocols = vec![b"h2".to_vec()];
                    (config, Arc::new(h2))
                });
            let targets = g
                .targets
                .iter()
                .map(|t| {
                    let shared = carried
                        .get(&(g.name.as_str(), t.address.as_str()))
                        .map(|s| Arc::clone(s))
                        .unwrap_or_else(|| {
                            // New at start: checked at once. New in a reload: also
                            // ramped up under slow start once healthy.
                            Arc::new(if previous.is_some() {
                                TargetShared::late()
                            } else {
                                TargetShared::default()
                            })
                        });
                    // A group no listener uses is not checked; one that becomes
                    // used starts checking its targets afresh.
                    // A target that was draining and is back starts afresh.
                    let state = shared.health.state();
                    if !used.contains(g.name.as_str()) {
                        shared.health.force(HealthState::Unused);
                    } else if matches!(state, HealthState::Unused | HealthState::Draining) {
                        shared.health.force(HealthState::Initial);
                    }
                    Target {
                        tls: tls_config.as_ref().map(|(config, h2_config)| TargetTls {
                            config: config.clone(),
                            h2_config: h2_config.clone(),
                            name: server_name(&t.host).unwrap_or_else(|| {
                                ServerName::IpAddress(resolved[&t.address].ip().into())
                            }),
                        }),
                        address: Arc::from(t.address.as_str()),
                        addr: resolved[&t.address],
                        weight: t.weight,
                        tier: t.tier,
                        origin: t.origin.clone(),
                        shared,
                        up: metrics.target_up(&g.name, &t.address),
                    }
                })
                .chain(
                    // Draining targets stay visible (and hold their in-flight work)
                    // with no weight until their deregistration delay ends.
                    draining
                        .iter()
                        .filter(|d| {
                            d.group == g.name && !g.targets.iter().any(|t| *t.address == *d.address)
                        })
                        .map(|d| Target {
                            tls: None,
                            address: d.address.clone(),
                            addr: d.addr,
                            weight: 0,
                            tier: 0,
                            origin: d.origin.clone(),
                            shared: d.shared.clone(),
                            up: metrics.target_up(&g.name, &d.address),
                        }),
                )
                .collect();
            Ok(Arc::new(GroupRuntime::new(
                g,
                targets,
                metrics.group(&g.name),
                cookie_keys.clone(),
            )))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let by_name: HashMap<&str, &Arc<GroupRuntime>> = groups.iter().map(|g| (&*g.name, g)).collect();
    let listeners = config
        .listeners
        .iter()
        .map(|l| {
            let name = names
                .clone()
                .find(|n| ***n == *l.name)
                .cloned()
                .unwrap_or_else(|| Arc::from(l.name.as_str()));
            let https = l.protocol == ListenerProtocol::Https;
            let compile = |action: &Action, scope: String| match action {
                Action::Forward(f) => {
                    let choices = f
                        .groups
                        .iter()
                        .map(|(group, weight)| GroupChoice {
                            group: by_name[group.as_str()].clone(),
                            weight: *weight,
                            metrics: metrics.route(
                                &l.name,
                                group,
                                by_name[group.as_str()].protocol_version
                                    == crate::config::ProtocolVersion::Grpc,
                            ),
                        })
                        .collect();
                    let stickiness = f
                        .stickiness
                        .map(|duration| GroupStickiness::new(duration, &scope, https));
                    RouteAction::Forward(ForwardAction::new(choices, stickiness))
                }
                Action::Redirect(r) => RouteAction::Redirect(RedirectAction::compile(r)),
                Action::FixedResponse(f) => RouteAction::Fixed(FixedAction::compile(f)),
            };
            // A login before the action, where the rule asks for one.
            let mut gates: Vec<Arc<crate::oidc::gate::Gate>> = Vec::new();
            let mut guarded = |action: RouteAction, authenticate: &Option<config::Authenticate>| {
                match authenticate.as_ref().and_then(|a| logins.gate(a, &name)) {
                    None => action,
                    Some(gate) => {
                        if !gates
                            .iter()
                            .any(|g| Arc::ptr_eq(&g.provider, &gate.provider))
                        {
                            gates.push(gate.clone());
                        }
                        RouteAction::Authenticated(Box::new(crate::route::Authenticated {
                            gate,
                            action,
                        }))
                    }
                }
            };
            let rules = l
                .rules
                .iter()
                .map(|r| CompiledRule {
                    priority: r.priority,
                    conditions: Conditions::compile(&r.conditions),
                    action: guarded(
                        compile(&r.action, format!("{}/{}", l.name, r.priority)),
                        &r.authenticate,
                    ),
                })
                .collect();
            let default = guarded(
                compile(&l.default_action, format!("{}/default", l.name)),
                &l.default_authenticate,
            );
            let routes = RuleTable::new(rules, default);
            let proto = if https { "https" } else { "http" };
            let ListenerTls {
                config: tls,
                challenge: acme_challenge,
                certificates,
            } = listener_tls(l, sessions, acme)?;
            for (name, not_after) in &certificates {
                metrics.certificate_expiry(&l.name, name, *not_after);
            }
            let client_certs = Mode::of(&l.mutual_authentication);
            Ok(Arc::new(ListenerRuntime {
                name,
                protocol: l.protocol,
                bind: l.bind,
                idle_timeout: l.idle_timeout,
                header_read_timeout: l.header_read_timeout,
                max_header_bytes: l.max_header_bytes,
                max_body_bytes: if l.max_body_bytes == 0 {
                    u64::MAX
                } else {
                    l.max_body_bytes
                },
                http2: l.http2,
                fast_path: config.global.http1_fast_path,
                max_connections: l.max_connections,
                routes,
                cookie_keys: cookie_keys.clone(),
                forwarded_proto: HeaderValue::from_static(proto),
                metrics: metrics.listener(&l.name, client_certs == Mode::Verify, !gates.is_empty()),
                http: super::listener::http_builder(l),
                http1: super::listener::http1_builder(l),
                unrouted: metrics.unrouted(&l.name),
                tls,
                acme_challenge,
                certificates,
                gates,
                client_certs,
                proxy_protocol: l.proxy_protocol,
                access_log: access_log.clone(),
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let snapshot = Snapshot {
        generation,
        config,
        listeners,
        groups,
    };
    publish_health(&snapshot);
    Ok(snapshot)
}

/// What `listener_tls` makes of a listener.
#[derive(Default)]
struct ListenerTls {
    config: Option<Arc<rustls::ServerConfig>>,
    challenge: Option<Arc<rustls::ServerConfig>>,
    certificates: Vec<(String, i64)>,
}

/// The TLS configuration of `l`: certificates read from their files now,
/// and the ACME certificates issued so far.
fn listener_tls(
    l: &config::Listener,
    sessions: &SessionState,
    acme: &AcmeCerts,
) -> Result<ListenerTls, String> {
    let alpn: &[&[u8]] = match l.protocol {
        ListenerProtocol::Http | ListenerProtocol::Tcp => return Ok(ListenerTls::default()),
        ListenerProtocol::Tls => &[],
        ListenerProtocol::Https if l.http2 => &[b"h2", b"http/1.1"],
        ListenerProtocol::Https => &[b"http/1.1"],
    };
    let certs = l
        .certificates
        .iter()
        .map(|c| crate::tls::load(&c.cert, &c.key))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("listener {:?}: {e}", l.name))?;
    let issued: Vec<(&String, LoadedCert)> = l
        .acme_certificates
        .iter()
        .filter_map(|names| Some((names.first()?, acme.issued.get(names)?.clone())))
        .collect();
    // An ACME certificate goes by the first name of its entry (the order
    // of names in what a server issues is the server's); a file by its own.
    let certificates = issued
        .iter()
        .filter_map(|(name, c)| Some(((*name).clone(), c.not_after?)))
        .chain(
            certs
                .iter()
                .filter_map(|c| Some((c.names.first()?.clone(), c.not_after?))),
        )
        .collect();
    let issued: Vec<LoadedCert> = issued.into_iter().map(|(_, c)| c).collect();
    let clients = crate::tls::client_auth::client_verifier(&l.mutual_authentication)
        .map_err(|e| format!("listener {:?}: mutual_authentication: {e}", l.name))?;
    let listener_certs = ListenerCerts {
        files: certs,
        acme: issued,
    };
    let config = server_config(listener_certs, l.tls_policy, alpn, sessions, clients)?;
    let challenge = acme
        .alpn
        .as_ref()
        .map(|c| challenge_config(c.clone()))
        .transpose()?;
    Ok(ListenerTls {
        config: Some(config),
        challenge,
        certificates,
    })
}

/// Sets the health gauges of every group and target to the snapshot's state.
pub fn publish_health(snapshot: &Snapshot) {
    for g in &snapshot.groups {
        g.publish_health();
    }
}

/// The names whose metric series stay after `snapshot` is swapped in
/// (`Metrics::retain_series`).
pub fn keep_series(snapshot: &Snapshot) -> crate::telemetry::metrics::KeepSeries {
    let used = used_groups(&snapshot.config);
    crate::telemetry::metrics::KeepSeries {
        listeners: snapshot
            .listeners
            .iter()
            .map(|l| l.name.to_string())
            .collect(),
        verifying_listeners: snapshot
            .listeners
            .iter()
            .filter(|l| l.client_certs == Mode::Verify)
            .map(|l| l.name.to_string())
            .collect(),
        groups: snapshot.groups.iter().map(|g| g.name.to_string()).collect(),
        used_groups: used.iter().map(|g| g.to_string()).collect(),
        certificates: snapshot
            .listeners
            .iter()
            .flat_map(|l| {
                l.certificates
                    .iter()
                    .map(|(c, _)| (l.name.to_string(), c.clone()))
            })
            .collect(),
        // Targets of unused groups are `unused`, not out of service: no series.
        targets: snapshot
            .groups
            .iter()
            .filter(|g| used.contains(&*g.name))
            .flat_map(|g| {
                g.targets
                    .iter()
                    .map(|t| (g.name.to_string(), t.address.to_string()))
            })
            .collect(),
    }
}

/// Names of the target groups some listener forwards to.
pub fn used_groups(config: &Config) -> HashSet<&str> {
    config
        .listeners
        .iter()
        .flat_map(|l| std::iter::once(&l.default_action).chain(l.rules.iter().map(|r| &r.action)))
        .filter_map(|a| match a {
            Action::Forward(f) => Some(f.groups.iter().map(|(g, _)| g.as_str())),
            _ => None,
        })
        .flatten()
        .collect()
}

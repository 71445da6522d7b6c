//! The Prometheus registry and the pre-resolved handles the hot path updates.
//!
//! Label lookups happen once per snapshot build (`*_for` constructors); a request
//! only touches atomics through the handles it carries.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// Buckets for response times from 100 µs to 60 s.
pub const RESPONSE_TIME_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Every metric of SPEC §5, registered once per process.
pub struct Metrics {
    registry: Registry,
    responses: IntCounterVec,
    requests: IntCounterVec,
    target_response: HistogramVec,
    healthy_targets: IntGaugeVec,
    unhealthy_targets: IntGaugeVec,
    target_up: IntGaugeVec,
    active_connections: IntGaugeVec,
    connections: IntCounterVec,
    rejected_connections: IntCounterVec,
    processed_bytes: IntCounterVec,
    target_connection_errors: IntCounterVec,
    target_response_errors: IntCounterVec,
    tls_handshake_errors: IntCounterVec,
    client_cert_errors: IntCounterVec,
    oidc_authentications: IntCounterVec,
    certificate_expiry: IntGaugeVec,
    /// `edgelb_acme_orders_total`, registered when ACME is configured.
    acme_orders: std::sync::OnceLock<IntCounterVec>,
    dns_resolutions: IntCounterVec,
    client_floods: IntCounterVec,
    health_checks: IntCounterVec,
    sticky_rejected: IntCounterVec,
    grpc_responses: IntCounterVec,
    config_reloads: IntCounterVec,
    /// The generation of the live configuration.
    pub config_generation: IntGauge,
    /// 1 when the last reload succeeded (the start counts as one).
    last_reload_successful: IntGauge,
    /// When the configuration was last loaded successfully (Unix seconds).
    last_reload_success: IntGauge,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// The cluster gauges, registered when the node is in a cluster (a
    /// standalone node has no such series to alert on).
    cluster: std::sync::OnceLock<ClusterGauges>,
}

/// `edgelb_cluster_connected` and `edgelb_cluster_config_revision` (SPEC §11).
#[derive(Clone)]
pub struct ClusterGauges {
    /// 1 while the node's watch on etcd runs.
    pub connected: IntGauge,
    /// The revision of the shared configuration the node serves.
    pub config_revision: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl Metrics {
    /// Registers every metric; `edgelb_build_info` is set at once.
    pub fn new() -> Self {
        let r = Registry::new();
        let responses = counter(
            &r,
            "edgelb_http_responses_total",
            "HTTP responses by source (lb or target) and status class.",
            &["listener", "target_group", "source", "class"],
        );
        let requests = counter(
            &r,
            "edgelb_requests_total",
            "HTTP requests received.",
            &["listener", "target_group"],
        );
        let target_response = HistogramVec::new(
            HistogramOpts::new(
                "edgelb_target_response_seconds",
                "Time from the request sent to a target to its response head.",
            )
            .buckets(RESPONSE_TIME_BUCKETS.to_vec()),
            &["target_group"],
        )
        .expect("valid metric");
        r.register(Box::new(target_response.clone()))
            .expect("registered once");
        let healthy_targets = gauge(
            &r,
            "edgelb_healthy_targets",
            "Targets in service.",
            &["target_group"],
        );
        let unhealthy_targets = gauge(
            &r,
            "edgelb_unhealthy_targets",
            "Targets out of service.",
            &["target_group"],
        );
        let target_up = gauge(
            &r,
            "edgelb_target_up",
            "1 while the target is in service.",
            &["target_group", "target"],
        );
        let active_connections = gauge(
            &r,
            "edgelb_active_connections",
            "Open client connections.",
            &["listener"],
        );
        let connections = counter(
            &r,
            "edgelb_connections_total",
            "Client connections accepted.",
            &["listener"],
        );
        let rejected_connections = counter(
            &r,
            "edgelb_rejected_connections_total",
            "Client connections refused by max_connections.",
            &["listener"],
        );
        let processed_bytes = counter(
            &r,
            "edgelb_processed_bytes_total",
            "Bytes received from and sent to clients.",
            &["listener", "direction"],
        );
        let target_connection_errors = counter(
            &r,
            "edgelb_target_connection_errors_total",
            "Connections to targets that failed.",
            &["target_group"],
        );
        let target_response_errors = counter(
            &r,
            "edgelb_target_response_errors_total",
            "Responses a target broke off, stalled or sent malformed (502 before the head, a closed client connection after it).",
            &["target_group"],
        );
        let client_floods = counter(
            &r,
            "edgelb_client_floods_total",
            "Client HTTP/2 connections closed for flooding control or CONTINUATION frames.",
            &["listener"],
        );
        let tls_handshake_errors = counter(
            &r,
            "edgelb_tls_handshake_errors_total",
            "Client TLS handshakes that failed.",
            &["listener"],
        );
        let oidc_authentications = counter(
            &r,
            "edgelb_oidc_authentications_total",
            "Logins through an OpenID Provider (SPEC §9), by result.",
            &["listener", "result"],
        );
        let certificate_expiry = gauge(
            &r,
            "edgelb_certificate_expiry_timestamp_seconds",
            "When each listener certificate expires (Unix seconds), file or ACME.",
            &["listener", "certificate"],
        );
        let client_cert_errors = counter(
            &r,
            "edgelb_client_certificate_errors_total",
            "Client certificates refused by mutual TLS, by reason.",
            &["listener", "reason"],
        );
        let dns_resolutions = counter(
            &r,
            "edgelb_dns_resolutions_total",
            "Resolutions of dns and srv targets, by result.",
            &["target_group", "result"],
        );
        let health_checks = counter(
            &r,
            "edgelb_health_checks_total",
            "Health checks by result.",
            &["target_group", "result"],
        );
        let sticky_rejected = counter(
            &r,
            "edgelb_stickiness_cookies_rejected_total",
            "Stickiness cookies that did not open (forged, expired, another key or group); ignored like absent ones.",
            &["target_group"],
        );
        let grpc_responses = counter(
            &r,
            "edgelb_grpc_responses_total",
            "gRPC responses of grpc target groups by grpc-status (the target's, or the load balancer's own errors).",
            &["listener", "target_group", "code"],
        );
        let config_reloads = counter(
            &r,
            "edgelb_config_reloads_total",
            "Configuration reloads by result.",
            &["result"],
        );
        let config_generation = IntGauge::new(
            "edgelb_config_generation",
            "Generation of the live configuration.",
        )
        .expect("valid metric");
        r.register(Box::new(config_generation.clone()))
            .expect("registered once");
        let access_log_dropped = IntCounter::new(
            "edgelb_access_log_dropped_total",
            "Access log lines dropped because the disk was slower than the traffic.",
        )
        .expect("valid metric");
        r.register(Box::new(access_log_dropped.clone()))
            .expect("registered once");
        let build_info = gauge(
            &r,
            "edgelb_build_info",
            "Always 1; the version in a label.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let last_reload_successful = IntGauge::new(
            "edgelb_config_last_reload_successful",
            "1 when the last configuration load (start or reload) succeeded, 0 after a failed reload.",
        )
        .expect("valid metric");
        r.register(Box::new(last_reload_successful.clone()))
            .expect("registered once");
        let last_reload_success = IntGauge::new(
            "edgelb_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix seconds).",
        )
        .expect("valid metric");
        r.register(Box::new(last_reload_success.clone()))
            .expect("registered once");
        last_reload_successful.set(1);
        last_reload_success.set(unix_now());
        // The standard process_* series (CPU, memory, descriptors, start time).
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
        Metrics {
            registry: r,
            responses,
            requests,
            target_response,
            healthy_targets,
            unhealthy_targets,
            target_up,
            active_connections,
            connections,
            rejected_connections,
            processed_bytes,
            target_connection_errors,
            target_response_errors,
            tls_handshake_errors,
            client_cert_errors,
            oidc_authentications,
            certificate_expiry,
            acme_orders: std::sync::OnceLock::new(),
            dns_resolutions,
            client_floods,
            health_checks,
            sticky_rejected,
            grpc_responses,
            config_reloads,
            config_generation,
            last_reload_successful,
            last_reload_success,
            access_log_dropped,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The cluster gauges, registered at the first call.
    pub fn cluster(&self) -> &ClusterGauges {
        self.cluster.get_or_init(|| {
            let one = |name: &str, help: &str| {
                let g = IntGauge::new(name, help).expect("valid metric");
                self.registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
                g
            };
            ClusterGauges {
                connected: one(
                    "edgelb_cluster_connected",
                    "1 while this node is connected to the cluster's etcd.",
                ),
                config_revision: one(
                    "edgelb_cluster_config_revision",
                    "The etcd revision of the shared configuration this node serves.",
                ),
            }
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        out
    }

    /// Counts a reload and sets the state gauges an alert can hold on to.
    pub fn reload_result(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        self.last_reload_successful.set(i64::from(ok));
        if ok {
            self.last_reload_success.set(unix_now());
        }
    }

    /// Drops every series of a listener, group or target that `keep` does
    /// not name (SPEC §5: series follow the configuration; one left behind
    /// is a false alert). Called after every snapshot swap; handles held by
    /// the old snapshot update series no longer exported.
    pub fn retain_series(&self, keep: &KeepSeries) {
        let listener = |l: &Labels| {
            l.get("listener")
                .is_none_or(|n| keep.listeners.contains(*n))
        };
        let group = |l: &Labels| {
            l.get("target_group")
                .is_none_or(|g| g.is_empty() || keep.groups.contains(*g))
        };
        let both = |l: &Labels| listener(l) && group(l);
        prune(&self.responses, both);
        prune(&self.grpc_responses, both);
        prune(&self.requests, both);
        prune(&self.active_connections, listener);
        prune(&self.connections, listener);
        prune(&self.rejected_connections, listener);
        prune(&self.processed_bytes, listener);
        prune(&self.tls_handshake_errors, listener);
        prune(&self.client_floods, listener);
        prune(&self.oidc_authentications, listener);
        prune(&self.certificate_expiry, |l| {
            match (l.get("listener"), l.get("certificate")) {
                (Some(n), Some(c)) => keep.certificates.contains(&(n.to_string(), c.to_string())),
                _ => false,
            }
        });
        prune(&self.client_cert_errors, |l| {
            l.get("listener")
                .is_some_and(|n| keep.verifying_listeners.contains(*n))
        });
        let used = |l: &Labels| {
            l.get("target_group")
                .is_some_and(|g| keep.used_groups.contains(*g))
        };
        prune(&self.healthy_targets, used);
        prune(&self.unhealthy_targets, used);
        prune(&self.target_up, |l| {
            match (l.get("target_group"), l.get("target")) {
                (Some(g), Some(t)) => keep.targets.contains(&(g.to_string(), t.to_string())),
                _ => false,
            }
        });
        prune(&self.target_response, group);
        prune(&self.target_connection_errors, group);
        prune(&self.target_response_errors, group);
        prune(&self.health_checks, group);
        prune(&self.sticky_rejected, group);
        prune(&self.dns_resolutions, group);
    }

    /// Handles of one listener; `verifies` (mutual TLS in `verify` mode)
    /// adds its client-certificate errors, at 0 for every reason.
    /// Records when `listener`'s certificate `certificate` (its first DNS
    /// name) expires.
    pub fn certificate_expiry(&self, listener: &str, certificate: &str, not_after: i64) {
        self.certificate_expiry
            .with_label_values(&[listener, certificate])
            .set(not_after);
    }

    /// Counts an ACME order (SPEC §10); the series exist once ACME is configured.
    pub fn acme_order(&self, ok: Option<bool>) {
        let orders = self.acme_orders.get_or_init(|| {
            let c = IntCounterVec::new(
                Opts::new(
                    "edgelb_acme_orders_total",
                    "ACME certificate orders, by result.",
                ),
                &["result"],
            )
            .expect("valid metric");
            self.registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            for result in ["success", "failure"] {
                c.with_label_values(&[result]);
            }
            c
        });
        if let Some(ok) = ok {
            orders
                .with_label_values(&[if ok { "success" } else { "failure" }])
                .inc();
        }
    }

    pub fn listener(&self, listener: &str, verifies: bool, logins: bool) -> ListenerMetrics {
        ListenerMetrics {
            active_connections: self.active_connections.with_label_values(&[listener]),
            connections: self.connections.with_label_values(&[listener]),
            rejected_connections: self.rejected_connections.with_label_values(&[listener]),
            bytes_in: self.processed_bytes.with_label_values(&[listener, "in"]),
            bytes_out: self.processed_bytes.with_label_values(&[listener, "out"]),
            tls_handshake_errors: self.tls_handshake_errors.with_label_values(&[listener]),
            client_floods: self.client_floods.with_label_values(&[listener]),
            client_cert_errors: verifies.then(|| {
                crate::tls::client_auth::REASONS.map(|reason| {
                    self.client_cert_errors
                        .with_label_values(&[listener, reason])
                })
            }),
            oidc: logins.then(|| {
                OIDC_RESULTS.map(|result| {
                    self.oidc_authentications
                        .with_label_values(&[listener, result])
                })
            }),
        }
    }

    fn classes(&self, listener: &str, group: &str, source: &str) -> ClassCounters {
        ClassCounters(["2xx", "3xx", "4xx", "5xx"].map(|class| {
            self.responses
                .with_label_values(&[listener, group, source, class])
        }))
    }

    /// Handles of requests of `listener` forwarded to `group`; `grpc`: the
    /// group is a `grpc` group (its responses counted by gRPC status too).
    pub fn route(&self, listener: &str, group: &str, grpc: bool) -> RouteMetrics {
        RouteMetrics {
            requests: self.requests.with_label_values(&[listener, group]),
            from_lb: self.classes(listener, group, "lb"),
            from_target: self.classes(listener, group, "target"),
            grpc: grpc.then(|| {
                GrpcCodes(Arc::new(GRPC_CODES.map(|code| {
                    self.grpc_responses
                        .with_label_values(&[listener, group, code])
                })))
            }),
        }
    }

    /// Handles of requests of `listener` answered without a target group
    /// (redirects, fixed responses, errors before routing): `target_group=""`.
    pub fn unrouted(&self, listener: &str) -> UnroutedMetrics {
        UnroutedMetrics {
            requests: self.requests.with_label_values(&[listener, ""]),
            from_lb: self.classes(listener, "", "lb"),
        }
    }

    /// Handles of one target group.
    pub fn group(&self, group: &str) -> GroupMetrics {
        GroupMetrics {
            response_time: self.target_response.with_label_values(&[group]),
            connection_errors: self.target_connection_errors.with_label_values(&[group]),
            response_errors: self.target_response_errors.with_label_values(&[group]),
            healthy_targets: self.healthy_targets.with_label_values(&[group]),
            unhealthy_targets: self.unhealthy_targets.with_label_values(&[group]),
            checks_success: self.health_checks.with_label_values(&[group, "success"]),
            checks_failure: self.health_checks.with_label_values(&[group, "failure"]),
            sticky_rejected: self.sticky_rejected.with_label_values(&[group]),
        }
    }

    /// The `edgelb_target_up` handle of one target.
    /// `edgelb_dns_resolutions_total` of a group: `success`, `nxdomain`
    /// (or an empty answer) and `error` (timeout, server failure).
    pub fn dns_resolutions(&self, group: &str) -> [IntCounter; 3] {
        ["success", "nxdomain", "error"]
            .map(|result| self.dns_resolutions.with_label_values(&[group, result]))
    }

    pub fn target_up(&self, group: &str, target: &str) -> IntGauge {
        self.target_up.with_label_values(&[group, target])
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-listener handles.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub active_connections: IntGauge,
    pub connections: IntCounter,
    pub rejected_connections: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub tls_handshake_errors: IntCounter,
    /// HTTP/2 connections cut off by the flood watch.
    pub client_floods: IntCounter,
    /// Client certificates refused, by `tls::client_auth::REASONS` (listeners
    /// that verify them).
    pub client_cert_errors: Option<[IntCounter; 4]>,
    /// Logins, by [`OIDC_RESULTS`] (listeners with an `authenticate`).
    pub oidc: Option<[IntCounter; 3]>,
}

/// The `result` label of `edgelb_oidc_authentications_total`, in index order.
pub const OIDC_RESULTS: [&str; 3] = ["success", "failure", "denied"];

/// Adds bytes counted locally (per request, not per read) to a listener's
/// processed-bytes counters, and zeroes the local counts.
pub fn flush_bytes(metrics: &ListenerMetrics, bytes_in: &mut u64, bytes_out: &mut u64) {
    if *bytes_in > 0 {
        metrics.bytes_in.inc_by(std::mem::take(bytes_in));
    }
    if *bytes_out > 0 {
        metrics.bytes_out.inc_by(std::mem::take(bytes_out));
    }
}

/// `edgelb_http_responses_total` of one (listener, group, source), by class.
#[derive(Clone)]
pub struct ClassCounters([IntCounter; 4]);

impl ClassCounters {
    /// Counts one response with `status` (1xx responses are not counted).
    #[inline]
    pub fn count(&self, status: u16) {
        if let Some(c) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.0.get(i as usize))
        {
            c.inc();
        }
    }
}

/// gRPC status codes 0..=16, as label values.
const GRPC_CODES: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

/// Handles of one (listener, target group) pair.
#[derive(Clone)]
pub struct RouteMetrics {
    pub requests: IntCounter,
    pub from_lb: ClassCounters,
    pub from_target: ClassCounters,
    /// `edgelb_grpc_responses_total` by code, for a `grpc` group.
    pub grpc: Option<GrpcCodes>,
}

/// `edgelb_grpc_responses_total` of one route, by code (one `Arc` to clone
/// into a streamed response).
#[derive(Clone)]
pub struct GrpcCodes(Arc<[IntCounter; 17]>);

impl GrpcCodes {
    /// Counts a response with `grpc-status` `code` (an unknown code as 2,
    /// UNKNOWN).
    pub fn count(&self, code: u32) {
        self.0[usize::try_from(code).ok().filter(|c| *c < 17).unwrap_or(2)].inc();
    }
}

impl RouteMetrics {
    /// Counts a gRPC response with `grpc-status` `code`; nothing for a group
    /// that is not `grpc`.
    pub fn count_grpc(&self, code: u32) {
        if let Some(codes) = &self.grpc {
            codes.count(code);
        }
    }
}

/// Handles of one listener's responses that no target group produced.
#[derive(Clone)]
pub struct UnroutedMetrics {
    pub requests: IntCounter,
    pub from_lb: ClassCounters,
}

/// Handles of one target group.
#[derive(Clone)]
pub struct GroupMetrics {
    pub response_time: Histogram,
    pub connection_errors: IntCounter,
    /// Responses broken off or malformed by their target.
    pub response_errors: IntCounter,
    pub healthy_targets: IntGauge,
    pub unhealthy_targets: IntGauge,
    pub checks_success: IntCounter,
    pub checks_failure: IntCounter,
    pub sticky_rejected: IntCounter,
}

/// What [`Metrics::retain_series`] keeps: the live snapshot's names.
#[derive(Debug, Default)]
pub struct KeepSeries {
    pub listeners: std::collections::HashSet<String>,
    /// Listeners that verify client certificates.
    pub verifying_listeners: std::collections::HashSet<String>,
    /// Every group of the configuration.
    pub groups: std::collections::HashSet<String>,
    /// Groups some listener forwards to (the only ones with health gauges).
    pub used_groups: std::collections::HashSet<String>,
    /// (group, target address), draining targets included.
    pub targets: std::collections::HashSet<(String, String)>,
    /// (listener, certificate name) of every certificate served.
    pub certificates: std::collections::HashSet<(String, String)>,
}

type Labels<'a> = std::collections::HashMap<&'a str, &'a str>;

/// Removes the series of `vec` whose labels `keep` refuses.
fn prune<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    keep: impl Fn(&Labels) -> bool,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: Labels = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if !keep(&labels) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

//! The server: builds the runtime from a configuration file, publishes it, and
//! reloads and shuts it down. Reloads are serialised; each either swaps a whole
//! new snapshot in or changes nothing.

use super::acme::AcmeManager;
use super::cluster::{self, ClusterLink};
use crate::balance::cookie::CookieKeys;
use crate::config::{self, Config, ConfigError, Loaded};
use crate::health::HealthState;
use crate::listener::{self, ListenerSet};
use crate::oidc::claims::DataSigner;
use crate::oidc::gate::{Logins, UsedStates};
use crate::runtime::Live;
use crate::runtime::checker::Checkers;
use crate::runtime::dns::DnsAnswers;
use crate::runtime::registry::{Refusal, Registry};
use crate::runtime::resolve::Resolved;
use crate::runtime::resolve::resolve_targets;
use crate::runtime::snapshot::{
    BuildContext, DrainingTarget, Snapshot, build, keep_series, used_groups,
};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::tls::server::SessionState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The outcome of the last reload, for `/status`.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub time: SystemTime,
    pub ok: bool,
    pub error: Option<String>,
}

/// Why the server could not start (exit 1 for the first, 2 for the second).
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Runtime(String),
}

/// The running load balancer.
pub struct Server {
    config_path: PathBuf,
    /// The live snapshot.
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    listeners: tokio::sync::Mutex<ListenerSet>,
    last_reload: Mutex<ReloadStatus>,
    /// The configuration the process started with ([admin] and the start-only keys).
    pub started_with: Arc<Config>,
    /// The cookie key used while no key file is configured: this process's
    /// random one, or a cluster's shared one (kept across reloads so cookies
    /// stay valid).
    fallback_keys: Mutex<Arc<CookieKeys>>,
    /// The live snapshot's health checkers.
    checkers: Mutex<Checkers>,
    /// TLS session cache and ticket key, shared by every snapshot.
    sessions: SessionState,
    /// Targets draining out.
    draining: Mutex<Vec<DrainingTarget>>,
    /// What the live snapshot was built from besides its config (for rebuilds).
    last_inputs: Mutex<(Resolved, Arc<CookieKeys>)>,
    /// Wakes the drain reaper when drains change.
    drain_changed: Notify,
    /// Targets registered and deregistered through the API.
    registry: Mutex<Registry>,
    /// The access log (started with the process).
    pub access_log: Option<Arc<AccessLog>>,
    /// The configuration served before registrations: the file as last
    /// loaded, or on a cluster node its local file with the shared part.
    file_config: Mutex<Arc<Config>>,
    /// The configuration file as last loaded.
    local_config: Mutex<Arc<Config>>,
    /// The node's link to its cluster (SPEC §11); `None` standalone.
    cluster: Option<Arc<ClusterLink>>,
    /// ACME certificates and their challenges (SPEC §10).
    pub(super) acme: Arc<AcmeManager>,
    /// The key that signs `x-amzn-oidc-data` (SPEC §9): the process's, or
    /// a cluster's shared one.
    signer: Mutex<Arc<DataSigner>>,
    /// Logins that ended here (a replayed callback gets 401).
    used_logins: Arc<UsedStates>,
    /// The answers of the DNS sources (targets laid over the rest).
    dns: Mutex<DnsAnswers>,
    /// Wakes the DNS watch when a reload may have changed the sources.
    dns_sources: Arc<Notify>,
}

fn current_generation(live: &Live) -> u64 {
    live.load().generation
}

/// Drops drained targets when their deregistration delay ends.
async fn reap_drained(server: Weak<Server>) {
    loop {
        let Some(strong) = server.upgrade() else {
            return;
        };
        let next = strong.next_drain_end();
        let changed = async { strong.drain_changed.notified().await };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {
                        if let Err(e) = strong.refresh().await {
                            tracing::error!("removing drained targets failed: {e}");
                        }
                    }
                    _ = changed => {}
                }
            }
            None => changed.await,
        }
    }
}

/// The stickiness keys of `config`: its key files (re-read on every reload; the
/// first seals, all open), or the process's random key.
fn cookie_keys(config: &Config, fallback: &Arc<CookieKeys>) -> Result<Arc<CookieKeys>, String> {
    if config.global.stickiness_key_files.is_empty() {
        return Ok(fallback.clone());
    }
    let secrets = config
        .global
        .stickiness_key_files
        .iter()
        .map(|p| config::read_key_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(CookieKeys::from_secrets(&secrets)))
}

/// Whether any group or forward uses stickiness.
fn uses_stickiness(config: &Config) -> bool {
    config.target_groups.iter().any(|g| g.stickiness.is_some())
        || config.listeners.iter().any(|l| {
            std::iter::once(&l.default_action)
                .chain(l.rules.iter().map(|r| &r.action))
                .any(|a| matches!(a, config::Action::Forward(f) if f.stickiness.is_some()))
        })
}

/// Starts the checkers of every target of every group a listener uses.
fn start_checkers(snapshot: &Snapshot) -> Checkers {
    let used = used_groups(&snapshot.config);
    Checkers::start(snapshot.groups.iter().filter(|g| used.contains(&*g.name)))
}

/// The configuration of a loaded file, its warnings logged.
fn supported(loaded: Loaded) -> Result<Config, ConfigError> {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded.config)
}

impl Server {
    /// Starts serving `loaded` (read from `config_path`): resolves targets,
    /// binds every listener, publishes generation 1.
    pub async fn start(
        config_path: &Path,
        loaded: Loaded,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Server>, StartError> {
        let local = Arc::new(supported(loaded).map_err(StartError::Config)?);
        let joined = cluster::start(&local).await.map_err(StartError::Runtime)?;
        let mut registry = Registry::load(
            local
                .global
                .state_file
                .as_deref()
                .filter(|_| joined.is_none()),
        )
        .map_err(|e| StartError::Config(ConfigError { lines: vec![e] }))?;
        let mut random_keys = Arc::new(CookieKeys::random());
        let mut shared_error = None;
        let file = match &joined {
            None => local.clone(),
            Some(j) => {
                registry.replace(&j.state.registered, &j.state.deregistered);
                if let Some(keys) = j.link.shared_keys(&j.state) {
                    random_keys = keys;
                }
                match j.link.compose(&local, &j.state) {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        tracing::error!("the shared configuration cannot be applied:\n{e}");
                        shared_error = Some(e);
                        local.clone()
                    }
                }
            }
        };
        let config = Arc::new(registry.apply(&file, true));
        let resolved = resolve_targets(&config).await.map_err(|e| {
            StartError::Config(ConfigError {
                lines: vec![format!("{}: {e}", config_path.display())],
            })
        })?;
        let mut set = ListenerSet::default();
        let prepared = set
            .prepare(&config)
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let sessions = SessionState::new().map_err(StartError::Runtime)?;
        let cookie_keys = cookie_keys(&config, &random_keys)
            .map_err(|e| StartError::Config(ConfigError { lines: vec![e] }))?;
        if config.global.stickiness_key_files.is_empty()
            && joined.is_none()
            && uses_stickiness(&config)
        {
            tracing::warn!(
                "no global.stickiness_key_file: stickiness cookies are sealed with a random key of this process; \
                 other nodes and restarts will not honour them"
            );
        }
        let access_log =
            AccessLog::start(&file.global.access_log, metrics.access_log_dropped.clone())
                .map_err(|e| StartError::Runtime(format!("access log: {e}")))?;
        let acme = Arc::new(AcmeManager::default());
        if let Some(j) = &joined {
            j.link.preload(&j.state);
            acme.adopt(&j.state);
        }
        acme.sync(&config, joined.as_ref().map(|j| &*j.link));
        if config.acme.is_some() {
            metrics.acme_order(None);
        }
        let acme_certs = acme.certs(&config);
        let signer = joined
            .as_ref()
            .and_then(|j| j.link.shared_signer(&j.state))
            .unwrap_or_else(|| Arc::new(DataSigner::generate()));
        let used_logins = Arc::new(UsedStates::default());
        let logins = Logins::new(&config, signer.clone(), used_logins.clone());
        let ctx = BuildContext {
            access_log: &access_log,
            draining: &[],
            resolved: &resolved,
            metrics: &metrics,
            cookie_keys: &cookie_keys,
            sessions: &sessions,
            acme: &acme_certs,
            logins: &logins,
        };
        let snapshot = build(config.clone(), 1, None, std::iter::empty(), &ctx)
            .map_err(StartError::Runtime)?;
        metrics.retain_series(&keep_series(&snapshot));
        let live = Arc::new(Live::from_pointee(snapshot));
        let checkers = Mutex::new(start_checkers(&live.load()));
        set.commit(&config, prepared, &live);
        metrics.config_generation.set(1);
        let server = Arc::new(Server {
            config_path: config_path.to_path_buf(),
            live,
            metrics,
            listeners: tokio::sync::Mutex::new(set),
            last_reload: Mutex::new(ReloadStatus {
                time: SystemTime::now(),
                ok: shared_error.is_none(),
                error: shared_error.clone(),
            }),
            started_with: config,
            fallback_keys: Mutex::new(random_keys),
            checkers,
            sessions,
            draining: Mutex::new(Vec::new()),
            last_inputs: Mutex::new((resolved, cookie_keys)),
            drain_changed: Notify::new(),
            registry: Mutex::new(registry),
            access_log,
            file_config: Mutex::new(file),
            local_config: Mutex::new(local),
            cluster: joined.as_ref().map(|j| j.link.clone()),
            acme,
            signer: Mutex::new(signer),
            used_logins,
            dns: Mutex::new(DnsAnswers::default()),
            dns_sources: Arc::new(Notify::new()),
        });
        if shared_error.is_some() {
            server.metrics.reload_result(false);
        }
        if let Some(j) = joined {
            cluster::started(&j.link, j.state, shared_error.is_none());
            server
                .metrics
                .cluster()
                .config_revision
                .set(j.link.view().revision);
            tokio::spawn(cluster::run(Arc::downgrade(&server), j.link, j.from_store));
        }
        super::acme::spawn(&server);
        tokio::spawn(reap_drained(Arc::downgrade(&server)));
        tokio::spawn(super::dns::watch(Arc::downgrade(&server)));
        Ok(server)
    }

    /// Reloads the configuration file: read, parse, validate, resolve, bind new
    /// listeners, build, swap. Any failure keeps the running configuration.
    /// Returns the new generation.
    pub async fn reload(&self) -> Result<u64, String> {
        let mut set = self.listeners.lock().await;
        let result = self.try_reload(&mut set).await;
        self.reloaded(result.clone());
        result
    }

    /// Records the outcome of a reload: metrics, `/status`, the log.
    fn reloaded(&self, result: Result<u64, String>) {
        self.metrics.reload_result(result.is_ok());
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = ReloadStatus {
            time: SystemTime::now(),
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
        };
        match &result {
            Ok(generation) => tracing::info!(generation, "configuration reloaded"),
            Err(e) => tracing::error!("reload failed, the running configuration is kept:\n{e}"),
        }
    }

    async fn try_reload(&self, set: &mut ListenerSet) -> Result<u64, String> {
        let loaded = config::load(&self.config_path).map_err(|e| e.to_string())?;
        let local = Arc::new(supported(loaded).map_err(|e| e.to_string())?);
        self.warn_start_only_changes(&local);
        let file = match &self.cluster {
            None => local.clone(),
            Some(link) => Arc::new(link.compose(&local, &link.state())?),
        };
        // Registered targets stay; deregistered file targets come back (only
        // once this reload succeeds; on a cluster node they stay out until
        // the next push).
        let mut effective = self.registry().apply(&file, self.cluster.is_some());
        self.dns().apply(&mut effective);
        let generation = self.live.load().generation + 1;
        self.install(set, Arc::new(effective), generation).await?;
        if self.cluster.is_none() {
            self.registry().file_reloaded();
        }
        *self.file_config.lock().unwrap_or_else(|e| e.into_inner()) = file;
        *self.local_config.lock().unwrap_or_else(|e| e.into_inner()) = local;
        self.dns_sources.notify_one();
        Ok(generation)
    }

    /// Resolves, binds, builds and swaps in `config` as `generation`.
    async fn install(
        &self,
        set: &mut ListenerSet,
        config: Arc<Config>,
        generation: u64,
    ) -> Result<(), String> {
        let config = self.acme.overlaid(config);
        self.acme.sync(&config, self.cluster.as_deref());
        if config.acme.is_some() {
            self.metrics.acme_order(None);
        }
        let acme_certs = self.acme.certs(&config);
        let resolved = resolve_targets(&config).await?;
        let fallback = self
            .fallback_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cookie_keys = cookie_keys(&config, &fallback)?;
        let prepared = set.prepare(&config).map_err(|e| e.to_string())?;
        let previous = self.live.load_full();
        let draining = self.drain_removed(&previous, &config);
        let logins = Logins::new(&config, self.signer(), self.used_logins.clone());
        let ctx = self.build_context(&draining, &resolved, &cookie_keys, &acme_certs, &logins);
        let snapshot = build(
            config.clone(),
            generation,
            Some(&previous),
            set.names(),
            &ctx,
        )?;
        self.live.store(Arc::new(snapshot));
        self.metrics.retain_series(&keep_series(&self.live.load()));
        // The old snapshot's checkers stop as the new ones start.
        *self.checkers.lock().unwrap_or_else(|e| e.into_inner()) =
            start_checkers(&self.live.load());
        let stopped = set.commit(&config, prepared, &self.live);
        if !stopped.is_empty() {
            let timeout = config.global.drain_timeout;
            tokio::spawn(listener::drain(stopped, timeout));
        }
        self.metrics.config_generation.set(generation as i64);
        *self.last_inputs.lock().unwrap_or_else(|e| e.into_inner()) = (resolved, cookie_keys);
        self.drain_changed.notify_one();
        Ok(())
    }

    /// What a build needs from this server besides the config.
    fn build_context<'a>(
        &'a self,
        draining: &'a [DrainingTarget],
        resolved: &'a Resolved,
        cookie_keys: &'a Arc<CookieKeys>,
        acme: &'a crate::tls::acme::AcmeCerts,
        logins: &'a Logins,
    ) -> BuildContext<'a> {
        BuildContext {
            access_log: &self.access_log,
            draining,
            resolved,
            metrics: &self.metrics,
            cookie_keys,
            sessions: &self.sessions,
            acme,
            logins,
        }
    }

    /// `GET /oidc/jwks`: the public key of `x-amzn-oidc-data` (SPEC §9).
    pub fn oidc_jwks(&self) -> serde_json::Value {
        self.signer().jwks()
    }

    fn signer(&self) -> Arc<DataSigner> {
        self.signer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs what ACME changed (a certificate, a challenge token): the
    /// same configuration and generation, rebuilt.
    pub(super) async fn apply_acme(&self) -> Result<(), String> {
        let mut set = self.listeners.lock().await;
        let effective = self.effective_config();
        self.install(&mut set, effective, current_generation(&self.live))
            .await
    }

    /// `POST /acme/renew`: every ACME certificate is ordered again now.
    pub fn renew_acme(&self) -> usize {
        self.acme.renew_all()
    }

    /// `/status`'s `acme` list; `None` without `[acme]`.
    pub fn acme_status(&self) -> Option<Vec<serde_json::Value>> {
        self.live
            .load()
            .config
            .acme
            .is_some()
            .then(|| self.acme.status())
    }

    /// The file's configuration with the API's registrations and the DNS
    /// sources' answers applied.
    fn effective_config(&self) -> Arc<Config> {
        let file = self.file_config();
        let mut effective = self.registry().apply(&file, true);
        self.dns().apply(&mut effective);
        Arc::new(effective)
    }

    /// The configuration file as last loaded.
    pub(super) fn file_config(&self) -> Arc<Config> {
        self.file_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn dns(&self) -> std::sync::MutexGuard<'_, DnsAnswers> {
        self.dns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notified when a reload may have changed the DNS sources.
    pub(super) fn dns_sources_changed(&self) -> Arc<Notify> {
        self.dns_sources.clone()
    }

    /// Installs the DNS sources' new answers (the generation stays: the
    /// configuration did not change).
    pub(super) async fn apply_dns(&self) -> Result<(), String> {
        let mut set = self.listeners.lock().await;
        let effective = self.effective_config();
        self.install(&mut set, effective, current_generation(&self.live))
            .await
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// RegisterTargets: the target starts `initial` and survives reloads and
    /// restarts. Nothing changes on a refusal.
    pub async fn register_target(
        &self,
        group: &str,
        address: &str,
        weight: u32,
    ) -> Result<(), Refusal> {
        if let Some(link) = &self.cluster {
            return cluster::register(self, link, group, address, weight).await;
        }
        let mut set = self.listeners.lock().await;
        let current = self.live.load().config.clone();
        // A name that does not resolve is refused before anything is recorded.
        resolves(address).await?;
        self.registry().register(&current, group, address, weight)?;
        let effective = self.effective_config();
        if let Err(e) = self
            .install(&mut set, effective, current_generation(&self.live))
            .await
        {
            let after = self.effective_config();
            let _ = self.registry().deregister(&after, group, address);
            return Err(Refusal(500, e));
        }
        tracing::info!(
            target_group = group,
            target = address,
            weight,
            "target registered"
        );
        Ok(())
    }

    /// DeregisterTargets: the target drains for `deregistration_delay`, then goes.
    pub async fn deregister_target(&self, group: &str, address: &str) -> Result<(), Refusal> {
        if let Some(link) = &self.cluster {
            return cluster::deregister(self, link, group, address).await;
        }
        let mut set = self.listeners.lock().await;
        let current = self.live.load().config.clone();
        self.registry().deregister(&current, group, address)?;
        let effective = self.effective_config();
        self.install(&mut set, effective, current_generation(&self.live))
            .await
            .map_err(|e| Refusal(500, e))?;
        tracing::info!(
            target_group = group,
            target = address,
            "target deregistered: draining"
        );
        Ok(())
    }

    /// Whether `address` may be registered in `group` now (the checks of
    /// [`Registry::register`], and the name resolves).
    pub(super) async fn check_registration(
        &self,
        group: &str,
        address: &str,
        weight: u32,
    ) -> Result<(), Refusal> {
        let current = self.live.load().config.clone();
        Registry::default().register(&current, group, address, weight)?;
        resolves(address).await
    }

    /// Whether `address` may be deregistered from `group` now.
    pub(super) fn check_deregistration(&self, group: &str, address: &str) -> Result<(), Refusal> {
        let current = self.live.load().config.clone();
        Registry::default().deregister(&current, group, address)
    }

    /// The configuration file as last loaded.
    pub(super) fn local_config(&self) -> Arc<Config> {
        self.local_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The node's link to its cluster, if it is in one.
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.as_ref()
    }

    /// Installs a cluster's shared `state` (SPEC §11): its configuration
    /// when it `config_changed` (a reload: a new generation, or nothing of
    /// it when it cannot be applied), its registrations and its key. Returns
    /// the configuration revision served after.
    pub(super) async fn apply_shared(
        &self,
        link: &ClusterLink,
        state: &crate::cluster::state::SharedState,
        config_changed: bool,
    ) -> Option<i64> {
        let mut set = self.listeners.lock().await;
        let mut generation = current_generation(&self.live);
        let mut file = self.file_config();
        let mut reload: Option<Result<(), String>> = None;
        if config_changed {
            match link.compose(&self.local_config(), state) {
                Ok(c) => {
                    file = Arc::new(c);
                    generation += 1;
                }
                Err(e) => reload = Some(Err(e)),
            }
        }
        self.registry()
            .replace(&state.registered, &state.deregistered);
        self.acme.adopt(state);
        if let Some(signer) = link.shared_signer(state) {
            *self.signer.lock().unwrap_or_else(|e| e.into_inner()) = signer;
        }
        if let Some(keys) = link.shared_keys(state) {
            *self.fallback_keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
        }
        if reload.is_none() {
            let mut effective = self.registry().apply(&file, true);
            self.dns().apply(&mut effective);
            let installed = self
                .install(&mut set, Arc::new(effective), generation)
                .await;
            if config_changed {
                reload = Some(installed);
            } else if let Err(e) = installed {
                tracing::error!("cluster registrations cannot be applied: {e}");
            }
        }
        let revision = state.config.as_ref().map(|c| c.revision);
        match reload {
            None => None,
            Some(Ok(())) => {
                *self.file_config.lock().unwrap_or_else(|e| e.into_inner()) = file;
                self.dns_sources.notify_one();
                self.reloaded(Ok(generation));
                Some(revision.unwrap_or(0))
            }
            Some(Err(e)) => {
                self.reloaded(Err(format!(
                    "shared configuration of revision {}: {e}",
                    revision.unwrap_or(0)
                )));
                None
            }
        }
    }

    /// Targets of `previous` that `config` no longer has (in a group it still
    /// has) start draining; drains whose target is back, or whose time is up,
    /// end. Returns the drains the next snapshot shows.
    fn drain_removed(&self, previous: &Snapshot, config: &Config) -> Vec<DrainingTarget> {
        let now = Instant::now();
        // One set of (group, address) for the whole comparison: a scan per
        // target is quadratic in the size of the configuration.
        let present: std::collections::HashSet<(&str, &str)> = config
            .target_groups
            .iter()
            .flat_map(|g| {
                g.targets
                    .iter()
                    .map(|t| (g.name.as_str(), t.address.as_str()))
            })
            .collect();
        let in_config = |group: &str, address: &str| present.contains(&(group, address));
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|d| d.until > now && !in_config(&d.group, &d.address));
        for g in &previous.groups {
            let Some(new_group) = config.target_groups.iter().find(|n| *n.name == *g.name) else {
                continue;
            };
            for t in &g.targets {
                if in_config(&g.name, &t.address)
                    || draining
                        .iter()
                        .any(|d| d.group == *g.name && d.address == t.address)
                {
                    continue;
                }
                if let Some(change) = t.shared.health.force(HealthState::Draining) {
                    g.log_change(t, change);
                }
                t.shared.pool.clear();
                draining.push(DrainingTarget {
                    group: g.name.to_string(),
                    address: t.address.clone(),
                    addr: t.addr,
                    origin: t.origin.clone(),
                    shared: t.shared.clone(),
                    until: now + new_group.deregistration_delay,
                });
            }
        }
        draining.clone()
    }

    /// Rebuilds the live snapshot from its own configuration without the drains
    /// that have ended (the generation stays: the configuration did not change).
    async fn refresh(&self) -> Result<(), String> {
        let set = self.listeners.lock().await;
        let previous = self.live.load_full();
        let now = Instant::now();
        let draining = {
            let mut d = self.draining.lock().unwrap_or_else(|e| e.into_inner());
            let before = d.len();
            d.retain(|t| t.until > now);
            if d.len() == before {
                return Ok(());
            }
            d.clone()
        };
        let (resolved, cookie_keys) = self
            .last_inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let acme_certs = self.acme.certs(&previous.config);
        let logins = Logins::new(&previous.config, self.signer(), self.used_logins.clone());
        let ctx = self.build_context(&draining, &resolved, &cookie_keys, &acme_certs, &logins);
        let snapshot = build(
            previous.config.clone(),
            previous.generation,
            Some(&previous),
            set.names(),
            &ctx,
        )?;
        for g in &previous.groups {
            for t in &g.targets {
                if t.shared.health.state() == HealthState::Draining
                    && !draining.iter().any(|d| Arc::ptr_eq(&d.shared, &t.shared))
                {
                    tracing::info!(target_group = %g.name, target = %t.address, "drained target removed");
                    t.up.set(0);
                    t.shared.gone.notify_waiters();
                }
            }
        }
        self.live.store(Arc::new(snapshot));
        self.metrics.retain_series(&keep_series(&self.live.load()));
        *self.checkers.lock().unwrap_or_else(|e| e.into_inner()) =
            start_checkers(&self.live.load());
        Ok(())
    }

    /// When the next drain ends, if any.
    fn next_drain_end(&self) -> Option<Instant> {
        self.draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|d| d.until)
            .min()
    }

    fn warn_start_only_changes(&self, config: &Config) {
        let old = &self.started_with;
        if old.admin != config.admin {
            tracing::warn!("[admin] changed: it takes effect at the next start only");
        }
        if old.global.worker_threads != config.global.worker_threads {
            tracing::warn!("global.worker_threads changed: it takes effect at the next start only");
        }
        if old.global.access_log != config.global.access_log {
            tracing::warn!("global.access_log changed: it takes effect at the next start only");
        }
        if old.global.watch_config != config.global.watch_config {
            tracing::warn!("global.watch_config changed: it takes effect at the next start only");
        }
        if old.global.state_file != config.global.state_file {
            tracing::warn!("global.state_file changed: it takes effect at the next start only");
        }
        if old.global.spread_connections != config.global.spread_connections {
            tracing::warn!(
                "global.spread_connections changed: listeners already bound keep their setting"
            );
        }
    }

    /// The outcome of the last reload.
    pub fn last_reload(&self) -> ReloadStatus {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The address listener `name` is bound to.
    pub async fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().await.local_addr(name)
    }

    /// Closes every listening socket at once, lets in-flight requests finish
    /// (idle keep-alive connections close now) for up to the configured
    /// `drain_timeout`, and returns whether everything finished in time.
    pub async fn shutdown(&self) -> bool {
        let stopped = self.listeners.lock().await.stop_all();
        let timeout: Duration = self.live.load().config.global.drain_timeout;
        listener::drain(stopped, timeout).await
    }
}

/// Refuses an address whose name does not resolve (400).
async fn resolves(address: &str) -> Result<(), Refusal> {
    let (host, port) = config::split_host_port(address).map_err(|e| Refusal(400, e))?;
    if tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(|mut a| a.next().is_none())
        .unwrap_or(true)
    {
        return Err(Refusal(400, format!("{address} does not resolve")));
    }
    Ok(())
}

//! A node of a cluster (SPEC §11): its link to etcd, the start from etcd or
//! from the cache file, the watch that applies every change as a reload or a
//! registration does, the node's record on its lease, and the admin writes
//! (push, register, deregister) that go to etcd and come back through the
//! watch — one path for this node's changes and every other node's.

use super::server::Server;
use crate::balance::cookie::CookieKeys;
use crate::cluster::etcd::{Compare, Etcd, EtcdError, Op, WatchError};
use crate::cluster::layout::Layout;
use crate::cluster::state::{Member, Registration, SharedState};
use crate::config::{self, Cluster, Config};
use crate::runtime::registry::Refusal;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a start waits for etcd before it serves from the cache file.
const START_WAIT: Duration = Duration::from_secs(3);
/// The lease of a node's record.
const NODE_LEASE_SECONDS: i64 = 10;
/// How often the lease is kept alive and the record refreshed.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);
/// Reconnection back-off.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long an admin write waits to see its change applied on this node.
const APPLY_WAIT: Duration = Duration::from_secs(3);
/// The lease of the ACME lock (kept alive while an order runs).
const ACME_LOCK_SECONDS: i64 = 30;
/// The answer of every admin write while etcd cannot be written.
pub const UNAVAILABLE: &str = "cluster store unavailable";

/// A node's link to its cluster.
pub struct ClusterLink {
    pub etcd: Etcd,
    pub layout: Layout,
    pub node: String,
    cache_file: Option<PathBuf>,
    /// Whether the node has its own stickiness key files (then no shared key
    /// is made).
    own_keys: bool,
    /// The shared state this node has applied.
    state: Mutex<SharedState>,
    /// The store revision applied (admin writes wait on it).
    applied: tokio::sync::watch::Sender<i64>,
    connected: AtomicBool,
    /// The revision of the shared configuration served.
    config_revision: AtomicI64,
    /// The generation the node's record last said.
    generation: AtomicU64,
    /// Wakes the link to rewrite the node's record.
    record_changed: Notify,
}

/// `GET /cluster`'s document.
pub struct ClusterView {
    pub node: String,
    pub connected: bool,
    pub revision: i64,
    pub members: Vec<Member>,
}

impl ClusterLink {
    fn new(cluster: &Cluster, own_keys: bool) -> Result<ClusterLink, String> {
        Ok(ClusterLink {
            etcd: Etcd::new(cluster)?,
            layout: Layout::new(&cluster.prefix),
            node: cluster.node_name.clone(),
            cache_file: cluster.cache_file.clone(),
            own_keys,
            state: Mutex::new(SharedState::default()),
            applied: tokio::sync::watch::Sender::new(0),
            connected: AtomicBool::new(false),
            config_revision: AtomicI64::new(0),
            generation: AtomicU64::new(0),
            record_changed: Notify::new(),
        })
    }

    /// The shared state applied.
    pub fn state(&self) -> SharedState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `state` the one read by the ACME storage while a start builds
    /// from it (recorded as applied by [`started`] once the server runs).
    pub(super) fn preload(&self, state: &SharedState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state.clone();
    }

    /// What `GET /cluster` shows.
    pub fn view(&self) -> ClusterView {
        let state = self.state();
        ClusterView {
            node: self.node.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            revision: self.config_revision.load(Ordering::Relaxed),
            members: state.members.into_values().collect(),
        }
    }

    /// The name the shared configuration goes by in errors.
    pub fn shown(&self) -> PathBuf {
        PathBuf::from(format!("etcd:{}", self.layout.config()))
    }

    /// The configuration a node with `local` as its file serves from `state`:
    /// the local file alone while nothing was pushed.
    pub fn compose(&self, local: &Config, state: &SharedState) -> Result<Config, String> {
        match &state.config {
            None => Ok(local.clone()),
            Some(shared) => {
                let loaded = config::parse_shared(&shared.text, &self.shown(), local)
                    .map_err(|e| e.to_string())?;
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                Ok(loaded.config)
            }
        }
    }

    /// The shared stickiness key of `state`, unless the node has its own.
    pub fn shared_keys(&self, state: &SharedState) -> Option<Arc<CookieKeys>> {
        if self.own_keys {
            return None;
        }
        let secret = B64.decode(state.stickiness_key.as_deref()?).ok()?;
        Some(Arc::new(CookieKeys::from_secrets(&[secret])))
    }

    /// The cluster's shared key for `x-amzn-oidc-data`, if made yet: every
    /// node signs with it, so any node's `/oidc/jwks` verifies any node's.
    pub fn shared_signer(
        &self,
        state: &SharedState,
    ) -> Option<Arc<crate::oidc::claims::DataSigner>> {
        let pkcs8 = B64.decode(state.oidc_key.as_deref()?).ok()?;
        match crate::oidc::claims::DataSigner::from_pkcs8(&pkcs8) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!("the cluster's OIDC key: {e}");
                None
            }
        }
    }

    /// Records `state` as applied, with the configuration revision served;
    /// when what the node serves `changed`, the cache file and the node's
    /// record follow (a change of members alone touches neither: the
    /// records would otherwise chase each other's events).
    fn applied(&self, state: SharedState, config_revision: Option<i64>, changed: bool) {
        let revision = state.revision;
        if changed
            && let Some(path) = &self.cache_file
            && let Err(e) = state.save(path)
        {
            tracing::warn!("cluster cache: {e}");
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        if let Some(r) = config_revision {
            self.config_revision.store(r, Ordering::Relaxed);
        }
        self.applied.send_replace(revision);
        if changed {
            self.record_changed.notify_one();
        }
    }

    fn set_connected(&self, server: &Server, connected: bool) {
        if self.connected.swap(connected, Ordering::Relaxed) != connected {
            if connected {
                tracing::info!("cluster: connected to etcd");
            } else {
                tracing::warn!("cluster: etcd unreachable; serving what was applied last");
            }
        }
        server.metrics.cluster().connected.set(i64::from(connected));
    }

    /// Waits until this node has applied store revision `revision`.
    async fn wait_applied(&self, revision: i64) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(APPLY_WAIT, rx.wait_for(|&r| r >= revision)).await;
    }

    /// Takes the ACME lock (SPEC §10: one node orders at a time): its lease,
    /// or `None` when another node holds it.
    pub(super) async fn acme_lock(&self) -> Result<Option<i64>, String> {
        let lease = self
            .etcd
            .lease_grant(ACME_LOCK_SECONDS)
            .await
            .map_err(|e| e.to_string())?;
        let key = self.layout.acme_lock();
        let (taken, _) = self
            .etcd
            .txn(
                &[Compare::Absent(&key)],
                &[Op::Put {
                    key: &key,
                    value: self.node.as_bytes(),
                    lease,
                }],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(taken.then_some(lease))
    }

    /// Keeps the ACME lock's lease alive.
    pub(super) async fn acme_keepalive(&self, lease: i64) {
        let _ = self.etcd.lease_keepalive(lease).await;
    }

    /// Lets the ACME lock go.
    pub(super) async fn acme_unlock(&self) {
        let key = self.layout.acme_lock();
        let _ = self.etcd.txn(&[], &[Op::Delete(&key)]).await;
    }

    /// Writes `ops`, then waits until this node — and, for up to
    /// [`APPLY_WAIT`], every other node — has applied them (a challenge is
    /// answered by whichever node the ACME server reaches).
    pub(super) async fn write_everywhere(&self, ops: &[Op<'_>]) -> Result<(), String> {
        let (_, revision) = self.etcd.txn(&[], ops).await.map_err(|e| e.to_string())?;
        self.wait_applied(revision).await;
        let mut rx = self.applied.subscribe();
        let everywhere = async {
            loop {
                let lagging = self
                    .state()
                    .members
                    .values()
                    .any(|m| m.name != self.node && m.applied_revision < revision);
                if !lagging || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(APPLY_WAIT, everywhere).await;
        Ok(())
    }

    fn unavailable(e: EtcdError) -> Refusal {
        tracing::warn!("cluster write failed: {e}");
        Refusal(503, UNAVAILABLE.to_owned())
    }
}

/// What a node starts from.
pub(super) struct Start {
    pub link: Arc<ClusterLink>,
    pub state: SharedState,
    /// Whether `state` was read from etcd (else from the cache file: read
    /// again once etcd answers).
    pub from_store: bool,
}

/// Reads the shared state for a start: from etcd when it answers within
/// [`START_WAIT`], else from the cache file, else nothing.
pub(super) async fn start(local: &Config) -> Result<Option<Start>, String> {
    let Some(cluster) = &local.cluster else {
        return Ok(None);
    };
    let own_keys = !local.global.stickiness_key_files.is_empty();
    let link = Arc::new(ClusterLink::new(cluster, own_keys)?);
    let read = tokio::time::timeout(START_WAIT, link.etcd.range_prefix(link.layout.root())).await;
    let (state, from_store) = match read {
        Ok(Ok((revision, kvs))) => (SharedState::read(&link.layout, revision, &kvs), true),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer in time".to_owned(),
            };
            match cached(cluster.cache_file.as_deref()) {
                Some(state) => {
                    tracing::warn!(
                        revision = state.revision,
                        "cluster: {why}; serving the cached state"
                    );
                    (state, false)
                }
                None => {
                    tracing::warn!(
                        "cluster: {why}; no cached state: serving nothing until etcd answers"
                    );
                    (SharedState::default(), false)
                }
            }
        }
    };
    Ok(Some(Start {
        link,
        state,
        from_store,
    }))
}

fn cached(path: Option<&Path>) -> Option<SharedState> {
    match SharedState::load(path?) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!("cluster cache: {e}");
            None
        }
    }
}

/// Records the state a node started with (after the server was built from it).
pub(super) fn started(link: &ClusterLink, state: SharedState, config_ok: bool) {
    let revision = state
        .config
        .as_ref()
        .map(|c| c.revision)
        .filter(|_| config_ok);
    link.applied(state, revision, true);
}

/// Runs until the server goes: keeps the watch on etcd, applies each change,
/// keeps the node's record on its lease, and reconnects with back-off.
pub(super) async fn run(server: Weak<Server>, link: Arc<ClusterLink>, from_store: bool) {
    let mut read = !from_store;
    let mut lease = 0i64;
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = session(&server, &link, &mut read, &mut lease, &mut backoff).await;
        let Some(strong) = server.upgrade() else {
            return;
        };
        match outcome {
            Ok(()) => return,
            // Why a connected stretch ended is worth a line; each failed
            // reconnection is not.
            Err(e) if link.connected.load(Ordering::Relaxed) => tracing::warn!("cluster: {e}"),
            Err(e) => tracing::debug!("cluster: {e}"),
        }
        link.set_connected(&strong, false);
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connected stretch: `Ok` when the server is gone, `Err` when etcd was lost.
async fn session(
    server: &Weak<Server>,
    link: &ClusterLink,
    read: &mut bool,
    lease: &mut i64,
    backoff: &mut Duration,
) -> Result<(), String> {
    let root = link.layout.root().to_owned();
    if *read {
        let (revision, kvs) = link
            .etcd
            .range_prefix(&root)
            .await
            .map_err(|e| e.to_string())?;
        let Some(s) = server.upgrade() else {
            return Ok(());
        };
        apply(&s, link, SharedState::read(&link.layout, revision, &kvs)).await;
        *read = false;
    }
    if !link.own_keys && link.state().stickiness_key.is_none() {
        // Made once for every node: the first to get here writes it.
        let secret = CookieKeys::random_secret();
        let key = link.layout.stickiness_key();
        link.etcd
            .txn(
                &[Compare::Absent(&key)],
                &[Op::Put {
                    key: &key,
                    value: B64.encode(secret).as_bytes(),
                    lease: 0,
                }],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    if link.state().oidc_key.is_none() {
        // Made once for every node, as the stickiness key is.
        let key = link.layout.oidc_key();
        let pkcs8 = crate::oidc::claims::DataSigner::new_pkcs8();
        link.etcd
            .txn(
                &[Compare::Absent(&key)],
                &[Op::Put {
                    key: &key,
                    value: B64.encode(pkcs8).as_bytes(),
                    lease: 0,
                }],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let from = link.state().revision + 1;
    let mut watch = match link.etcd.watch(&root, from).await {
        Ok(w) => w,
        Err(e) => return Err(e.to_string()),
    };
    {
        let Some(s) = server.upgrade() else {
            return Ok(());
        };
        link.set_connected(&s, true);
    }
    *backoff = MIN_BACKOFF;
    if *lease == 0
        || link
            .etcd
            .lease_keepalive(*lease)
            .await
            .map_err(|e| e.to_string())?
            == 0
    {
        *lease = link
            .etcd
            .lease_grant(NODE_LEASE_SECONDS)
            .await
            .map_err(|e| e.to_string())?;
    }
    write_record(server, link, *lease).await?;
    let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            batch = watch.next() => {
                let events = match batch {
                    Ok(events) => events,
                    Err(WatchError::Compacted(r)) => {
                        tracing::info!(compacted = r, "cluster: etcd compacted past this node's revision: reading everything again");
                        *read = true;
                        return Err(format!("watch compacted at {r}: reading everything again"));
                    }
                    Err(WatchError::Broken(e)) => return Err(e),
                };
                let Some(s) = server.upgrade() else {
                    return Ok(());
                };
                let mut newer = link.state();
                newer.apply(&link.layout, &events);
                apply(&s, link, newer).await;
            }
            _ = tick.tick() => {
                if link.etcd.lease_keepalive(*lease).await.map_err(|e| e.to_string())? == 0 {
                    *lease = link.etcd.lease_grant(NODE_LEASE_SECONDS).await.map_err(|e| e.to_string())?;
                }
                write_record(server, link, *lease).await?;
            }
            _ = link.record_changed.notified() => {
                write_record(server, link, *lease).await?;
            }
        }
    }
}

/// Applies `newer` if what the node serves changed; records it either way.
async fn apply(server: &Server, link: &ClusterLink, newer: SharedState) {
    let changes = link.state().changes_to(&newer);
    if !changes.served() {
        let keep = link.config_revision.load(Ordering::Relaxed);
        let revision = newer
            .config
            .as_ref()
            .map(|c| c.revision)
            .filter(|_| !changes.config)
            .unwrap_or(keep);
        link.applied(newer, Some(revision), false);
    } else {
        let config_revision = server.apply_shared(link, &newer, changes.config).await;
        link.applied(newer, config_revision, true);
    }
    server
        .metrics
        .cluster()
        .config_revision
        .set(link.config_revision.load(Ordering::Relaxed));
}

/// Writes the node's record (bound to `lease`).
async fn write_record(server: &Weak<Server>, link: &ClusterLink, lease: i64) -> Result<(), String> {
    let Some(s) = server.upgrade() else {
        return Ok(());
    };
    let generation = s.live.load().generation;
    link.generation.store(generation, Ordering::Relaxed);
    let member = Member {
        name: link.node.clone(),
        generation,
        config_revision: link.config_revision.load(Ordering::Relaxed),
        last_reload_ok: s.last_reload().ok,
        seen: crate::wire::time::rfc3339(std::time::SystemTime::now()),
        applied_revision: link.state().revision,
    };
    drop(s);
    let value = serde_json::to_vec(&member).map_err(|e| e.to_string())?;
    link.etcd
        .put(&link.layout.node(&link.node), &value, lease)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `PUT /cluster/config`: validates `text` as `check` does (errors name
/// `shown`), then writes it with compare-and-swap on the revision read, and
/// clears the deregistrations of config targets (a push is a reload).
pub async fn push(
    server: &Server,
    link: &ClusterLink,
    text: &str,
    shown: &Path,
) -> Result<i64, Refusal> {
    let local = server.local_config();
    config::parse_shared(text, shown, &local).map_err(|e| Refusal(400, e.to_string()))?;
    let key = link.layout.config();
    let current = link
        .etcd
        .get(&key)
        .await
        .map_err(ClusterLink::unavailable)?;
    let compare = match &current {
        Some(kv) => Compare::ModRevision(&key, kv.mod_revision),
        None => Compare::Absent(&key),
    };
    let cleared = link.layout.all_deregistered();
    let (done, revision) = link
        .etcd
        .txn(
            &[compare],
            &[
                Op::Put {
                    key: &key,
                    value: text.as_bytes(),
                    lease: 0,
                },
                Op::DeletePrefix(&cleared),
            ],
        )
        .await
        .map_err(ClusterLink::unavailable)?;
    if !done {
        return Err(Refusal(
            409,
            "the shared configuration changed while it was pushed: push again".to_owned(),
        ));
    }
    link.wait_applied(revision).await;
    Ok(revision)
}

/// RegisterTargets on a cluster node: written to etcd, applied by every node.
pub async fn register(
    server: &Server,
    link: &ClusterLink,
    group: &str,
    address: &str,
    weight: u32,
) -> Result<(), Refusal> {
    server.check_registration(group, address, weight).await?;
    let state = link.state();
    let back = (group.to_owned(), address.to_owned());
    let (done, revision) = if state.deregistered.contains(&back) {
        // A config target coming back: its own entry (and weight) again.
        let key = link.layout.deregistered(group, address);
        link.etcd.txn(&[], &[Op::Delete(&key)]).await
    } else {
        let key = link.layout.target(group, address);
        let value = serde_json::to_vec(&Registration { weight }).unwrap_or_default();
        link.etcd
            .txn(
                &[Compare::Absent(&key)],
                &[Op::Put {
                    key: &key,
                    value: &value,
                    lease: 0,
                }],
            )
            .await
    }
    .map_err(ClusterLink::unavailable)?;
    if !done {
        return Err(Refusal(
            409,
            format!("target {address} is already registered in {group:?}"),
        ));
    }
    link.wait_applied(revision).await;
    tracing::info!(
        target_group = group,
        target = address,
        weight,
        "target registered in the cluster"
    );
    Ok(())
}

/// DeregisterTargets on a cluster node: every node drains the target.
pub async fn deregister(
    server: &Server,
    link: &ClusterLink,
    group: &str,
    address: &str,
) -> Result<(), Refusal> {
    server.check_deregistration(group, address)?;
    let state = link.state();
    let registered = state
        .registered
        .get(group)
        .is_some_and(|g| g.contains_key(address));
    let revision = if registered {
        let key = link.layout.target(group, address);
        link.etcd.txn(&[], &[Op::Delete(&key)]).await
    } else {
        let key = link.layout.deregistered(group, address);
        link.etcd
            .txn(
                &[],
                &[Op::Put {
                    key: &key,
                    value: b"",
                    lease: 0,
                }],
            )
            .await
    }
    .map_err(ClusterLink::unavailable)?
    .1;
    link.wait_applied(revision).await;
    tracing::info!(
        target_group = group,
        target = address,
        "target deregistered in the cluster: draining"
    );
    Ok(())
}

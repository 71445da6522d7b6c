//! ACME certificates of a running server (SPEC §10): which entries the
//! configuration has, what was issued and stored, when each is renewed, the
//! background task that orders them one at a time with back-off, and how a
//! challenge is answered — an http-01 token as a rule in front of every http
//! listener's rules, a tls-alpn-01 certificate through `tls::acme`. A new
//! certificate is installed like a registration: a rebuilt snapshot, no
//! re-bind, open connections untouched.
//!
//! On a cluster node (SPEC §11) the account, the certificates and the
//! challenges live in etcd: one node orders at a time (an etcd lock on a
//! lease), every node serves what was issued and answers every challenge.

use super::cluster::ClusterLink;
use super::server::Server;
use crate::acme::order::{Challenge, Responder, order};
use crate::acme::schedule::{backoff, renew_at};
use crate::acme::store::{Issued, Store, certificate_id};
use crate::cluster::etcd::Op;
use crate::cluster::state::SharedState;
use crate::config::certs::{LoadedCert, from_pem};
use crate::config::{
    Acme, AcmeChallenge, Action, Conditions, Config, FixedResponse, ListenerProtocol, Rule,
};
use crate::tls::acme::{AcmeCerts, AlpnChallenges};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// How long a node waits before looking again when another node orders.
const BUSY_WAIT: Duration = Duration::from_secs(15);

/// The path prefix of http-01 challenges.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Where an entry stands (`/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// Not issued yet; the first order is on its way.
    Pending,
    /// Issued and served.
    Valid,
    /// The last order failed (an older certificate may still serve).
    Failed,
}

impl CertState {
    fn as_str(self) -> &'static str {
        match self {
            CertState::Pending => "pending",
            CertState::Valid => "valid",
            CertState::Failed => "failed",
        }
    }
}

/// One `{ acme = [names] }` entry.
#[derive(Debug, Clone)]
struct Entry {
    state: CertState,
    cert: Option<LoadedCert>,
    /// The chain of `cert`, as issued (to tell a new one from it).
    chain_pem: Option<String>,
    last_error: Option<String>,
    /// Failed orders in a row.
    failures: u32,
    /// No order before this (back-off after a failure).
    retry_at: Option<SystemTime>,
    /// `POST /acme/renew` asked for a new certificate.
    renew: bool,
}

/// Where the account and the certificates are kept: files, or etcd.
enum Storage<'a> {
    Files(Store),
    Cluster(&'a ClusterLink),
}

impl Storage<'_> {
    fn certificate(&self, names: &[String]) -> Result<Option<Issued>, String> {
        match self {
            Storage::Files(store) => store.certificate(names),
            Storage::Cluster(link) => link
                .state()
                .acme_certs
                .get(&certificate_id(names))
                .map(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
                .transpose(),
        }
    }

    fn account(&self) -> Result<Option<instant_acme::AccountCredentials>, String> {
        match self {
            Storage::Files(store) => store.account(),
            Storage::Cluster(link) => link
                .state()
                .acme_account
                .map(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                .transpose(),
        }
    }

    async fn save_account(
        &self,
        credentials: &instant_acme::AccountCredentials,
    ) -> Result<(), String> {
        match self {
            Storage::Files(store) => store.save_account(credentials),
            Storage::Cluster(link) => {
                let text = serde_json::to_vec(credentials).map_err(|e| e.to_string())?;
                let key = link.layout.acme_account();
                link.write_everywhere(&[Op::Put {
                    key: &key,
                    value: &text,
                    lease: 0,
                }])
                .await
            }
        }
    }

    async fn save_certificate(&self, names: &[String], issued: &Issued) -> Result<(), String> {
        match self {
            Storage::Files(store) => store.save_certificate(names, issued),
            Storage::Cluster(link) => {
                let text = serde_json::to_vec(issued).map_err(|e| e.to_string())?;
                let key = link.layout.acme_cert(&certificate_id(names));
                link.write_everywhere(&[Op::Put {
                    key: &key,
                    value: &text,
                    lease: 0,
                }])
                .await
            }
        }
    }
}

/// A stored certificate made ready to serve.
fn loaded(names: &[String], issued: &Issued) -> Option<LoadedCert> {
    match from_pem(&issued.chain_pem, &issued.key_pem, &names[0]) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("stored ACME certificate unusable, ordering again: {e}");
            None
        }
    }
}

/// The ACME side of one server.
#[derive(Debug, Default)]
pub struct AcmeManager {
    alpn: Arc<AlpnChallenges>,
    /// http-01 tokens answered now: token → key authorization.
    tokens: Mutex<BTreeMap<String, String>>,
    /// tls-alpn-01 names answered from a cluster's state.
    alpn_names: Mutex<Vec<String>>,
    entries: Mutex<BTreeMap<Vec<String>, Entry>>,
    /// Wakes the order task: entries changed, or a renewal was asked for.
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)
}

/// Every entry's names of `config`, each once.
fn configured(config: &Config) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for l in &config.listeners {
        for names in &l.acme_certificates {
            if !out.contains(names) {
                out.push(names.clone());
            }
        }
    }
    out
}

impl AcmeManager {
    /// Follows `config`'s entries: new ones start from the stored
    /// certificate if there is one (a restart orders nothing new), gone ones
    /// are forgotten. Wakes the order task when something is to be done.
    pub fn sync(&self, config: &Config, cluster: Option<&ClusterLink>) {
        let Some(acme) = &config.acme else {
            lock(&self.entries).clear();
            return;
        };
        let wanted = configured(config);
        let store = match cluster {
            Some(link) => Storage::Cluster(link),
            None => Storage::Files(Store::new(&acme.storage)),
        };
        let mut entries = lock(&self.entries);
        entries.retain(|names, _| wanted.contains(names));
        let mut added = false;
        for names in wanted {
            if entries.contains_key(&names) {
                continue;
            }
            let issued = store.certificate(&names).unwrap_or_else(|e| {
                tracing::warn!("ACME storage: {e}");
                None
            });
            let cert = issued.as_ref().and_then(|i| loaded(&names, i));
            let chain_pem = cert.as_ref().and(issued.map(|i| i.chain_pem));
            let state = if cert.is_some() {
                CertState::Valid
            } else {
                CertState::Pending
            };
            entries.insert(
                names,
                Entry {
                    state,
                    cert,
                    chain_pem,
                    last_error: None,
                    failures: 0,
                    retry_at: None,
                    renew: false,
                },
            );
            added = true;
        }
        drop(entries);
        if added {
            self.wake.notify_one();
        }
    }

    /// Takes a cluster's shared ACME state: certificates another node
    /// ordered, and the challenges every node answers.
    pub fn adopt(&self, state: &SharedState) {
        {
            let mut entries = lock(&self.entries);
            for (names, e) in entries.iter_mut() {
                let Some(text) = state.acme_certs.get(&certificate_id(names)) else {
                    continue;
                };
                let Ok(issued) = serde_json::from_str::<Issued>(text) else {
                    continue;
                };
                if e.chain_pem.as_deref() == Some(issued.chain_pem.as_str()) {
                    continue;
                }
                if let Some(cert) = loaded(names, &issued) {
                    e.state = CertState::Valid;
                    e.cert = Some(cert);
                    e.chain_pem = Some(issued.chain_pem);
                    e.last_error = None;
                    e.failures = 0;
                    e.retry_at = None;
                    e.renew = false;
                }
            }
        }
        *lock(&self.tokens) = state.acme_http.clone();
        let mut answered = lock(&self.alpn_names);
        for (name, digest) in &state.acme_alpn {
            if let Ok(digest) = B64.decode(digest)
                && let Err(e) = self.alpn.publish(name, &digest)
            {
                tracing::warn!("tls-alpn-01 certificate for {name}: {e}");
            }
        }
        for gone in answered
            .iter()
            .filter(|n| !state.acme_alpn.contains_key(*n))
        {
            self.alpn.withdraw(gone);
        }
        *answered = state.acme_alpn.keys().cloned().collect();
    }

    /// The certificates a build serves.
    pub fn certs(&self, config: &Config) -> AcmeCerts {
        let issued = lock(&self.entries)
            .iter()
            .filter_map(|(names, e)| Some((names.clone(), e.cert.clone()?)))
            .collect();
        let tls_alpn = config
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == AcmeChallenge::TlsAlpn01);
        AcmeCerts {
            issued,
            alpn: tls_alpn.then(|| self.alpn.clone()),
        }
    }

    /// `config` with a rule per http-01 token in front of every http
    /// listener's rules (other paths go through the rules as before).
    pub fn overlaid(&self, config: Arc<Config>) -> Arc<Config> {
        let tokens = lock(&self.tokens).clone();
        if tokens.is_empty() {
            return config;
        }
        let mut c = (*config).clone();
        for l in c
            .listeners
            .iter_mut()
            .filter(|l| l.protocol == ListenerProtocol::Http)
        {
            let rules = tokens.iter().map(|(token, key_authorization)| Rule {
                priority: 0,
                conditions: Conditions {
                    path: Some(vec![format!("{CHALLENGE_PATH}{token}")]),
                    ..Conditions::default()
                },
                action: Action::FixedResponse(FixedResponse {
                    status: 200,
                    content_type: "application/octet-stream".to_owned(),
                    body: key_authorization.clone(),
                }),
                authenticate: None,
            });
            let mut with = rules.collect::<Vec<_>>();
            with.append(&mut l.rules);
            l.rules = with;
        }
        Arc::new(c)
    }

    /// Every entry is ordered again now (`POST /acme/renew`): how many.
    pub fn renew_all(&self) -> usize {
        let mut entries = lock(&self.entries);
        for e in entries.values_mut() {
            e.renew = true;
            e.retry_at = None;
        }
        let n = entries.len();
        drop(entries);
        self.wake.notify_one();
        n
    }

    /// `/status`'s `acme` list.
    pub fn status(&self) -> Vec<Value> {
        lock(&self.entries)
            .iter()
            .map(|(names, e)| {
                json!({
                    "names": names,
                    "state": e.state.as_str(),
                    "expiry": e.cert.as_ref().and_then(|c| c.not_after).map(|t| crate::wire::time::rfc3339(unix(t))),
                    "last_error": e.last_error,
                })
            })
            .collect()
    }

    /// The entry to order now, if any, or when the next one is due.
    fn due(&self, acme: &Acme, now: SystemTime) -> Result<Vec<String>, Option<SystemTime>> {
        let entries = lock(&self.entries);
        let mut next: Option<SystemTime> = None;
        for (names, e) in entries.iter() {
            let at = match (&e.retry_at, e.renew, &e.cert) {
                (Some(retry), _, _) if *retry > now => *retry,
                (_, true, _) | (_, _, None) => return Ok(names.clone()),
                (_, _, Some(c)) => match (c.not_before, c.not_after) {
                    (Some(b), Some(a)) => unix(renew_at(b, a, acme.renew_before)),
                    _ => now,
                },
            };
            if at <= now {
                return Ok(names.clone());
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Err(next)
    }

    fn issued(&self, names: &[String], cert: LoadedCert, chain_pem: String) {
        if let Some(e) = lock(&self.entries).get_mut(names) {
            e.state = CertState::Valid;
            e.cert = Some(cert);
            e.chain_pem = Some(chain_pem);
            e.last_error = None;
            e.failures = 0;
            e.retry_at = None;
            e.renew = false;
        }
    }

    /// Another node is ordering: look again after `wait` (its certificate
    /// usually arrives first, through the cluster's watch).
    fn busy(&self, names: &[String], wait: Duration) {
        if let Some(e) = lock(&self.entries).get_mut(names) {
            e.retry_at = Some(SystemTime::now() + wait);
        }
    }

    fn failed(&self, names: &[String], error: String) -> Duration {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(names) else {
            return Duration::ZERO;
        };
        e.state = CertState::Failed;
        e.last_error = Some(error);
        e.failures += 1;
        e.renew = false;
        let wait = backoff(e.failures);
        e.retry_at = Some(SystemTime::now() + wait);
        wait
    }
}

/// Answers challenges through the server's listeners.
struct Listeners<'a>(&'a Server);

/// The keys that publish `challenges` to every node, with their values
/// (`None` when they are withdrawn).
fn challenge_keys(
    link: &ClusterLink,
    challenges: &[Challenge],
    publish: bool,
) -> Vec<(String, Option<Vec<u8>>)> {
    challenges
        .iter()
        .map(|c| match c {
            Challenge::Http {
                token,
                key_authorization,
            } => (
                link.layout.acme_http(token),
                publish.then(|| key_authorization.as_bytes().to_vec()),
            ),
            Challenge::TlsAlpn { domain, digest } => (
                link.layout.acme_alpn(domain),
                publish.then(|| B64.encode(digest).into_bytes()),
            ),
        })
        .collect()
}

/// Publishes (or withdraws) `challenges` through etcd, for every node.
async fn share(link: &ClusterLink, challenges: &[Challenge], publish: bool) {
    let keys = challenge_keys(link, challenges, publish);
    let ops: Vec<Op<'_>> = keys
        .iter()
        .map(|(key, value)| match value {
            Some(value) => Op::Put {
                key,
                value,
                lease: 0,
            },
            None => Op::Delete(key),
        })
        .collect();
    if let Err(e) = link.write_everywhere(&ops).await {
        tracing::warn!("sharing ACME challenges through etcd: {e}");
    }
}

impl Responder for Listeners<'_> {
    async fn publish(&self, challenges: &[Challenge]) {
        if let Some(link) = self.0.cluster() {
            return share(link, challenges, true).await;
        }
        let acme = &self.0.acme;
        let mut rebuild = false;
        for c in challenges {
            match c {
                Challenge::Http {
                    token,
                    key_authorization,
                } => {
                    lock(&acme.tokens).insert(token.clone(), key_authorization.clone());
                    rebuild = true;
                }
                Challenge::TlsAlpn { domain, digest } => {
                    if let Err(e) = acme.alpn.publish(domain, digest) {
                        tracing::warn!("tls-alpn-01 certificate for {domain}: {e}");
                    }
                }
            }
        }
        if rebuild && let Err(e) = self.0.apply_acme().await {
            tracing::warn!("answering the http-01 challenge: {e}");
        }
    }

    async fn withdraw(&self, challenges: &[Challenge]) {
        if let Some(link) = self.0.cluster() {
            return share(link, challenges, false).await;
        }
        let acme = &self.0.acme;
        let mut rebuild = false;
        for c in challenges {
            match c {
                Challenge::Http { token, .. } => {
                    lock(&acme.tokens).remove(token);
                    rebuild = true;
                }
                Challenge::TlsAlpn { domain, .. } => acme.alpn.withdraw(domain),
            }
        }
        if rebuild && let Err(e) = self.0.apply_acme().await {
            tracing::warn!("withdrawing the http-01 challenge: {e}");
        }
    }
}

/// Runs until the server goes: orders each due entry, one at a time, and
/// sleeps until the next is due or the entries change.
pub(super) async fn run(server: Weak<Server>, manager: Arc<AcmeManager>) {
    let mut account: Option<(Acme, instant_acme::Account)> = None;
    loop {
        let Some(s) = server.upgrade() else {
            return;
        };
        let config = s.live.load().config.clone();
        let Some(acme) = config.acme.clone() else {
            drop(s);
            manager.wake.notified().await;
            continue;
        };
        let names = match manager.due(&acme, SystemTime::now()) {
            Ok(names) => names,
            Err(next) => {
                drop(s);
                let wait = next
                    .and_then(|n| n.duration_since(SystemTime::now()).ok())
                    .unwrap_or(Duration::from_secs(86_400))
                    .min(Duration::from_secs(86_400));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = manager.wake.notified() => {}
                }
                continue;
            }
        };
        let cluster = s.cluster().cloned();
        let storage = match &cluster {
            Some(link) => Storage::Cluster(link),
            None => Storage::Files(Store::new(&acme.storage)),
        };
        // On a cluster node, one node orders at a time.
        let mut keepalive = None;
        if let Some(link) = &cluster {
            match link.acme_lock().await {
                Ok(Some(lease)) => {
                    let link = link.clone();
                    keepalive = Some(tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(10)).await;
                            link.acme_keepalive(lease).await;
                        }
                    }));
                }
                Ok(None) => {
                    tracing::debug!(names = ?names, "another node is ordering");
                    manager.busy(&names, BUSY_WAIT);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(names = ?names, "ACME: cannot take the cluster's lock: {e}");
                    manager.busy(&names, BUSY_WAIT);
                    continue;
                }
            }
        }
        let result = async {
            if account.as_ref().is_none_or(|(a, _)| *a != acme) {
                let (made, new) = crate::acme::account::account(&acme, storage.account()?).await?;
                if let Some(credentials) = new {
                    storage.save_account(&credentials).await?;
                }
                account = Some((acme.clone(), made));
            }
            let (_, acct) = account.as_ref().expect("set above");
            let issued: Issued = order(acct, &names, acme.challenge, &Listeners(&s)).await?;
            let cert = from_pem(&issued.chain_pem, &issued.key_pem, &names[0])?;
            storage.save_certificate(&names, &issued).await?;
            Ok::<_, String>((cert, issued.chain_pem))
        }
        .await;
        if let Some(task) = keepalive {
            task.abort();
            if let Some(link) = &cluster {
                link.acme_unlock().await;
            }
        }
        match result {
            Ok((cert, chain_pem)) => {
                tracing::info!(names = ?names, "ACME certificate issued");
                manager.issued(&names, cert, chain_pem);
                if let Err(e) = s.apply_acme().await {
                    tracing::error!("serving the new ACME certificate: {e}");
                }
                // Counted once it serves: a count seen means the new
                // certificate is what new handshakes get.
                s.metrics.acme_order(Some(true));
            }
            Err(e) => {
                s.metrics.acme_order(Some(false));
                let wait = manager.failed(&names, e.clone());
                tracing::warn!(names = ?names, retry_in = ?wait, "ACME order failed: {e}");
            }
        }
    }
}

/// Starts the order task of `server`.
pub(super) fn spawn(server: &Arc<Server>) {
    tokio::spawn(run(Arc::downgrade(server), server.acme.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AcmeChallenge;

    fn acme() -> Acme {
        Acme {
            directory: "https://acme.test/dir".into(),
            contact: Vec::new(),
            storage: "/nonexistent".into(),
            challenge: AcmeChallenge::Http01,
            renew_before: Duration::from_secs(30 * 86_400),
            ca_file: None,
        }
    }

    /// A certificate valid from `from` to `to` days from now (whole days).
    fn cert(from: i64, to: i64) -> LoadedCert {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
        let (y, m, d) = civil(now + from * 86_400);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = civil(now + to * 86_400);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let c = params.self_signed(&key).unwrap();
        from_pem(&c.pem(), &key.serialize_pem(), "test").unwrap()
    }

    /// The (year, month, day) of Unix time `unix` (H. Hinnant's civil_from_days).
    fn civil(unix: i64) -> (i32, u8, u8) {
        let z = unix.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        ((yoe + era * 400 + i64::from(m <= 2)) as i32, m, d)
    }

    fn with(cert: Option<LoadedCert>) -> AcmeManager {
        let m = AcmeManager::default();
        lock(&m.entries).insert(
            vec!["a.example.com".to_owned()],
            Entry {
                state: CertState::Valid,
                cert,
                chain_pem: None,
                last_error: None,
                failures: 0,
                retry_at: None,
                renew: false,
            },
        );
        m
    }

    #[test]
    fn an_entry_is_due_without_a_certificate_or_within_its_renewal_lead() {
        let now = SystemTime::now();
        assert!(with(None).due(&acme(), now).is_ok());
        // 90-day certificate with 10 days left: inside the 30-day lead.
        assert!(with(Some(cert(-80, 10))).due(&acme(), now).is_ok());
        // 60 days left: due in about 30 days.
        let next = with(Some(cert(-30, 60)))
            .due(&acme(), now)
            .unwrap_err()
            .unwrap();
        let days = next.duration_since(now).unwrap().as_secs() / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        // A failed order waits its back-off, then is due again.
        let m = with(None);
        m.failed(&["a.example.com".to_owned()], "no".into());
        assert!(m.due(&acme(), now).is_err());
        assert!(m.due(&acme(), now + Duration::from_secs(61)).is_ok());
        // POST /acme/renew makes a valid one due at once.
        let m = with(Some(cert(-30, 60)));
        m.renew_all();
        assert!(m.due(&acme(), now).is_ok());
    }
}

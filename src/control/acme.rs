//! ACME certificates of a running server (SPEC §10): which entries the
//! configuration has, what was issued and stored, when each is renewed, the
//! background task that orders them one at a time with back-off, and how a
//! challenge is answered — an http-01 token as a rule in front of every http
//! listener's rules, a tls-alpn-01 certificate through `tls::acme`. A new
//! certificate is installed like a registration: a rebuilt snapshot, no
//! re-bind, open connections untouched.

use super::server::Server;
use crate::acme::order::{Challenge, Responder, order};
use crate::acme::schedule::{backoff, renew_at};
use crate::acme::store::{Issued, Store};
use crate::config::certs::{LoadedCert, from_pem};
use crate::config::{
    Acme, AcmeChallenge, Action, Conditions, Config, FixedResponse, ListenerProtocol, Rule,
};
use crate::tls::acme::{AcmeCerts, AlpnChallenges};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

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
    last_error: Option<String>,
    /// Failed orders in a row.
    failures: u32,
    /// No order before this (back-off after a failure).
    retry_at: Option<SystemTime>,
    /// `POST /acme/renew` asked for a new certificate.
    renew: bool,
}

/// The ACME side of one server.
#[derive(Debug, Default)]
pub struct AcmeManager {
    alpn: Arc<AlpnChallenges>,
    /// http-01 tokens answered now: token → key authorization.
    tokens: Mutex<BTreeMap<String, String>>,
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
    pub fn sync(&self, config: &Config) {
        let Some(acme) = &config.acme else {
            lock(&self.entries).clear();
            return;
        };
        let wanted = configured(config);
        let store = Store::new(&acme.storage);
        let mut entries = lock(&self.entries);
        entries.retain(|names, _| wanted.contains(names));
        let mut added = false;
        for names in wanted {
            if entries.contains_key(&names) {
                continue;
            }
            let cert = match store.certificate(&names) {
                Ok(Some(issued)) => match from_pem(&issued.chain_pem, &issued.key_pem, &names[0]) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("stored ACME certificate unusable, ordering again: {e}");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!("ACME storage: {e}");
                    None
                }
            };
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

    fn issued(&self, names: &[String], cert: LoadedCert) {
        if let Some(e) = lock(&self.entries).get_mut(names) {
            e.state = CertState::Valid;
            e.cert = Some(cert);
            e.last_error = None;
            e.failures = 0;
            e.retry_at = None;
            e.renew = false;
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

impl Responder for Listeners<'_> {
    async fn publish(&self, challenges: &[Challenge]) {
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
        let store = Store::new(&acme.storage);
        let result = async {
            if account.as_ref().is_none_or(|(a, _)| *a != acme) {
                let made = crate::acme::account::account(&acme, &store).await?;
                account = Some((acme.clone(), made));
            }
            let (_, acct) = account.as_ref().expect("set above");
            let issued: Issued = order(acct, &names, acme.challenge, &Listeners(&s)).await?;
            let cert = from_pem(&issued.chain_pem, &issued.key_pem, &names[0])?;
            store.save_certificate(&names, &issued)?;
            Ok::<_, String>(cert)
        }
        .await;
        match result {
            Ok(cert) => {
                s.metrics.acme_order(Some(true));
                tracing::info!(names = ?names, "ACME certificate issued");
                manager.issued(&names, cert);
                if let Err(e) = s.apply_acme().await {
                    tracing::error!("serving the new ACME certificate: {e}");
                }
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

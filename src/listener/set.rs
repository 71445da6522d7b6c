//! The running listeners and how a new configuration changes them: listeners
//! are matched by name, bind address and protocol; an unchanged one keeps its
//! socket and accept loop; a new one is bound *before* the snapshot swap (so a
//! bind error fails the reload and changes nothing); a removed one stops
//! accepting and its connections drain.

use super::accept::{Draining, accept_loop, bind_for_workers};
use super::spread::Spread;
use crate::config::{Config, ListenerProtocol};
use crate::runtime::Live;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What identifies a running listener across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: String,
    bind: SocketAddr,
    protocol: ListenerProtocol,
}

/// The sockets of one listener: one per worker (see [`crate::workers`]).
type Sockets = Arc<Vec<std::net::TcpListener>>;

struct Running {
    identity: Identity,
    name: Arc<str>,
    sockets: Sockets,
    /// One accept loop per socket, each on its worker, each stopped on its own.
    loops: Vec<(Arc<Notify>, JoinHandle<Draining>)>,
}

impl Running {
    /// Tells every accept loop to stop; returns their drains.
    fn stop(self) -> impl Iterator<Item = JoinHandle<Draining>> {
        self.loops.into_iter().map(|(stop, task)| {
            stop.notify_one();
            task
        })
    }
}

/// Sockets bound for a configuration, not yet serving: per new listener, its
/// sockets and a descriptor of each for its accept loop.
pub struct Prepared {
    new: Vec<(Identity, Sockets, Vec<std::net::TcpListener>)>,
}

/// Every listener that accepts connections now.
#[derive(Default)]
pub struct ListenerSet {
    running: Vec<Running>,
}

fn identities(config: &Config) -> Vec<Identity> {
    config
        .listeners
        .iter()
        .map(|l| Identity {
            name: l.name.clone(),
            bind: l.bind,
            protocol: l.protocol,
        })
        .collect()
}

impl ListenerSet {
    /// Binds the sockets `config` needs that are not open yet. A socket whose
    /// address a running listener already holds (a renamed or re-protocoled
    /// listener) is shared instead of bound again. Nothing changes on error.
    pub fn prepare(&self, config: &Config) -> io::Result<Prepared> {
        let mut new = Vec::new();
        for id in identities(config) {
            if self.running.iter().any(|r| r.identity == id) {
                continue;
            }
            let failed = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("listener {:?}: cannot bind {}: {e}", id.name, id.bind),
                )
            };
            let sockets = match self.running.iter().find(|r| r.identity.bind == id.bind) {
                Some(r) => r.sockets.clone(),
                None => Arc::new(
                    bind_for_workers(id.bind, crate::workers::sockets_per_listener())
                        .map_err(failed)?,
                ),
            };
            // Each accept loop owns a descriptor of its own for its socket.
            let for_loops = sockets
                .iter()
                .map(|s| s.try_clone())
                .collect::<io::Result<Vec<_>>>()
                .map_err(failed)?;
            new.push((id, sockets, for_loops));
        }
        Ok(Prepared { new })
    }

    /// After the snapshot of `config` is live: starts the prepared listeners and
    /// stops those `config` no longer has. Returns the drains of the stopped ones.
    pub fn commit(
        &mut self,
        config: &Config,
        prepared: Prepared,
        live: &Arc<Live>,
    ) -> Vec<JoinHandle<Draining>> {
        let wanted = identities(config);
        let mut stopped = Vec::new();
        let mut kept = Vec::new();
        for r in self.running.drain(..) {
            if wanted.contains(&r.identity) {
                kept.push(r);
            } else {
                tracing::info!(listener = %r.identity.name, bind = %r.identity.bind, "listener removed: draining its connections");
                stopped.extend(r.stop());
            }
        }
        self.running = kept;
        for (identity, sockets, for_loops) in prepared.new {
            tracing::info!(listener = %identity.name, bind = %identity.bind, protocol = identity.protocol.as_str(), "listening");
            let name: Arc<str> = Arc::from(identity.name.as_str());
            let mut loops = Vec::with_capacity(for_loops.len());
            let spreads = Spread::for_loops(for_loops.len(), config.global.spread_connections);
            for (i, (socket, spread)) in for_loops.into_iter().zip(spreads).enumerate() {
                let stop = Arc::new(Notify::new());
                let task = crate::workers::spawn_on(
                    i,
                    accept_loop(name.clone(), socket, live.clone(), stop.clone(), spread),
                );
                loops.push((stop, task));
            }
            self.running.push(Running {
                identity,
                name,
                sockets,
                loops,
            });
        }
        stopped
    }

    /// The name each running listener is known by (the snapshot builder reuses
    /// these so lookups usually compare pointers).
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> + Clone {
        self.running.iter().map(|r| &r.name)
    }

    /// The address a listener is actually bound to (differs from its config for port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.running
            .iter()
            .find(|r| r.identity.name == name)
            .and_then(|r| r.sockets.first()?.local_addr().ok())
    }

    /// Stops every listener (sockets closed at once) and returns their drains.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<Draining>> {
        self.running.drain(..).flat_map(Running::stop).collect()
    }
}

/// Waits for stopped listeners' connections to finish, up to `timeout` in all;
/// returns whether everything finished in time.
pub async fn drain(stopped: Vec<JoinHandle<Draining>>, timeout: Duration) -> bool {
    let all = async {
        let mut drains = tokio::task::JoinSet::new();
        for task in stopped {
            if let Ok(draining) = task.await {
                drains.spawn(draining.finish());
            }
        }
        while drains.join_next().await.is_some() {}
    };
    tokio::time::timeout(timeout, all).await.is_ok()
}

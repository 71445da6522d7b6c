//! The target-connection steps of forwarding: a pooled or new plain socket
//! with one failover to another target ([`raw_socket`]), a failed connect
//! charged to its target by the attempt policy, and the purge of idle
//! connections. The pools and connections themselves are `upstream`'s
//! (re-exported here).

use crate::proxy::attempt::{self, Failure, Tried, Verdict};
pub use crate::upstream::connect::{ConnectError, connect, connect_raw, connect_upgradable};
pub use crate::upstream::pool::{ConnPool, PURGE_AFTER, TARGET_MAX_HEAD_BYTES, TargetConn};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

impl ConnectError {
    /// Charges a failed connect to target `index` of `group` (after
    /// `failovers` moves to other targets, of at most `max_failovers`) and
    /// says what the request does next ([`crate::proxy::attempt`]).
    pub fn charge(
        &self,
        group: &crate::runtime::target::GroupRuntime,
        index: usize,
        failovers: u32,
        max_failovers: u32,
    ) -> Verdict {
        // Nothing was sent: whether it could go again does not matter.
        let request = attempt::Request {
            replayable: true,
            reused: false,
        };
        let tried = Tried {
            failovers,
            replayed: false,
        };
        let failure = Failure::Connect {
            timed_out: self.timed_out(),
        };
        let verdict = attempt::decide(failure, request, tried, max_failovers);
        verdict.charge(group, index, &format_args!("connect failed: {self}"));
        verdict
    }
}

/// Purges the idle connections of every target of the live snapshot each
/// second, for as long as the daemon runs.
pub fn spawn_purger(live: std::sync::Arc<crate::runtime::Live>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let snapshot = live.load();
            for group in &snapshot.groups {
                for target in &group.targets {
                    target.shared.pool.purge(now);
                    target.shared.h2.purge(now);
                }
            }
        }
    });
}

/// Times a request goes again on a fresh pooled connection when a reused one
/// turned out closed before any byte of a response; after that, a new one.
pub const MAX_STALE_RETRIES: u32 = 3;

/// Where a request sent on raw target sockets stands among its attempts: the
/// fast path's loop and `proxy::raw`'s share it, so both follow the attempt
/// policy's "again" and "replay" the same way.
#[derive(Debug, Default)]
pub struct RawAttempts {
    /// Moved to another target after a failed connect.
    moved: bool,
    /// Pooled sockets found closed so far.
    stale: u32,
    /// Sent once more after a target went away under it.
    replayed: bool,
}

impl RawAttempts {
    /// What the request has been through, for [`attempt::decide`].
    pub fn tried(&self) -> Tried {
        Tried {
            failovers: u32::from(self.moved),
            replayed: self.replayed,
        }
    }

    /// Follows the policy's `next` for a failed exchange with target `*index`
    /// of `group`: true when the request goes again — on another socket of
    /// the same target ([`attempt::Next::Again`]), or once on a new socket of
    /// another target when the group has one ([`attempt::Next::Replay`]).
    pub fn go_again(
        &mut self,
        next: attempt::Next,
        group: &crate::runtime::target::GroupRuntime,
        index: &mut usize,
    ) -> bool {
        match next {
            attempt::Next::Again => self.stale += 1,
            attempt::Next::Replay => {
                self.replayed = true;
                self.stale = MAX_STALE_RETRIES;
                *index = group.pick(Some(*index)).unwrap_or(*index);
            }
            _ => return false,
        }
        true
    }
}

/// A plain socket for one request to target `*index` of `group`: its most
/// recently used idle one while the request has met fewer than
/// [`MAX_STALE_RETRIES`] stale ones (and was not replayed), else a new one.
/// With it, whether it was pooled and when the request goes out (the
/// connection's idle age counts from there). A refused or unanswered connect
/// counts against its target and the request tries one other target per
/// request (`*index` moves to it, `attempts` remembers it across the
/// caller's retries); `None` when that fails too or there is no other,
/// `*index` then naming the last target tried.
pub async fn raw_socket(
    group: &crate::runtime::target::GroupRuntime,
    index: &mut usize,
    attempts: &mut RawAttempts,
) -> Option<(TcpStream, bool, Instant)> {
    loop {
        let target = &group.targets[*index];
        let now = Instant::now();
        if attempts.stale < MAX_STALE_RETRIES
            && let Some(s) = target.shared.pool.checkout_raw(now)
        {
            return Some((s, true, now));
        }
        // Boxed: connecting is the rare path; its future would make every
        // request's future larger.
        match Box::pin(connect_raw(target.addr, group.connect_timeout)).await {
            Ok(s) => return Some((s, false, Instant::now())),
            Err(e) => {
                let verdict = e.charge(group, *index, u32::from(attempts.moved), 1);
                if verdict.next != attempt::Next::Failover {
                    return None;
                }
                // (A pick moves the balancer on: only when it is used.)
                *index = group.pick(Some(*index))?;
                attempts.moved = true;
            }
        }
    }
}

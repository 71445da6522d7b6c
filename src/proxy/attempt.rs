//! The one policy for an attempt to get a response from a target that went
//! wrong: what happens next (another target, the same request again, an
//! answer from the load balancer, a closed connection), whether the target is
//! to blame (a failed passive health check, and its reason), what is counted,
//! and what the access log says. A pure function of the failure and of what
//! the request has been through, so every path — the HTTP/1 fast path,
//! hyper's client, the raw target sockets of hyper's server, the L4 copy —
//! answers the same failure the same way ([`decide`]); the side effects on
//! the target are written once ([`Verdict::charge`]).

use crate::health::{Outcome, Reason};
use crate::runtime::target::GroupRuntime;

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connect was refused or reset (`timed_out`: not completed within
    /// `connect_timeout`). Nothing was sent.
    Connect { timed_out: bool },
    /// A reused connection gave nothing back at all: most likely closed by
    /// the target while it idled in the pool. `unsent`: the request is known
    /// not to have left (hyper hands it back).
    Stale { unsent: bool },
    /// The target went away after the request left, before any response
    /// head (told apart from [`Failure::Stale`] by hyper's client only).
    Reset,
    /// No response head within `request_timeout` of the request's last byte.
    Timeout,
    /// A response head that cannot be passed on: malformed, an unsolicited
    /// 101, a Transfer-Encoding other than chunked (`too_large`: over the
    /// head limit).
    InvalidHead { too_large: bool },
    /// The target broke off a response body already under way.
    BodyBroken,
    /// The client's own side failed: never the target's fault.
    Client(ClientFailure),
}

/// How a client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFailure {
    /// Nothing of it arrived for the listener's `idle_timeout`.
    Stalled,
    /// Longer than the listener's `max_body_bytes`.
    TooLarge,
    /// Broken off by the client (reset, malformed chunking).
    Broken,
    /// Framing the shadow reader could not follow (a bare LF, say).
    Framing,
    /// The client left in the middle of it.
    Gone,
}

/// The request's facts that decide whether it may go again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Idempotent (RFC 9110 §9.2.2) and without a body: sending it twice
    /// harms nothing and loses nothing.
    pub replayable: bool,
    /// It went on a pooled connection (one that may have died while idle).
    pub reused: bool,
}

impl ClientFailure {
    /// The failure a client's request body ended with.
    pub fn of(e: &crate::upstream::request_body::ClientBodyError) -> Self {
        use crate::upstream::request_body::ClientBodyError;
        match e {
            ClientBodyError::TooLarge => ClientFailure::TooLarge,
            ClientBodyError::Stalled => ClientFailure::Stalled,
            ClientBodyError::Framing => ClientFailure::Framing,
            ClientBodyError::Client(_) => ClientFailure::Broken,
        }
    }
}

/// What the request has been through so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried {
    /// Other targets tried after failed connects.
    pub failovers: u32,
    /// Already sent once more after the target went away under it.
    pub replayed: bool,
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another target, when the group has one (else answer 502): nothing
    /// reached the failed one.
    Failover,
    /// The same request on another connection of the same target (a fresh
    /// one once a few pooled ones turned out stale).
    Again,
    /// The same request once more, on a fresh connection to another target
    /// if there is one: it is safe to repeat.
    Replay,
    /// Answer as the load balancer with this status (the client connection
    /// stays open if the request was read to its end).
    Answer(u16),
    /// Answer with this status, then close the client connection (its body
    /// was not read to its end).
    AnswerAndClose(u16),
    /// Close the client connection without a word.
    Close,
}

/// Which counter of the target group a failure adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `edgelb_target_connection_errors_total`.
    Connection,
    /// `edgelb_target_response_errors_total`.
    Response,
}

/// The decision about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub next: Next,
    /// A failed passive health check of the target, for this reason.
    pub blame: Option<Reason>,
    pub counter: Option<Counter>,
    /// The access log's `error` (`None`: the line says nothing of it).
    pub error: Option<&'static str>,
}

/// The policy. `max_failovers`: other targets a failed connect may move the
/// request to (1 for HTTP, as ALB; 2 for L4 connections).
pub fn decide(failure: Failure, request: Request, tried: Tried, max_failovers: u32) -> Verdict {
    let target_failed = |status| Verdict {
        next: Next::Answer(status),
        blame: Some(Reason::FailedHealthChecks),
        counter: Some(Counter::Response),
        error: Some("target_failed"),
    };
    match failure {
        Failure::Connect { timed_out } => Verdict {
            next: if tried.failovers < max_failovers {
                Next::Failover
            } else {
                Next::Answer(502)
            },
            blame: Some(if timed_out {
                Reason::Timeout
            } else {
                Reason::FailedHealthChecks
            }),
            counter: Some(Counter::Connection),
            error: Some("connect_failed"),
        },
        // The keep-alive race: a pooled connection the target had closed.
        // Nothing of the request was read, or it is safe to send again.
        Failure::Stale { unsent } if request.reused && (unsent || request.replayable) => Verdict {
            next: Next::Again,
            blame: None,
            counter: None,
            error: None,
        },
        // The target went away after the request left, on a fresh connection
        // or on a pooled one: what is safe to send twice goes once more,
        // elsewhere (a target dying under steady load, ALB's and nginx's
        // `proxy_next_upstream` for idempotent requests).
        Failure::Stale { .. } | Failure::Reset if request.replayable && !tried.replayed => {
            Verdict {
                next: Next::Replay,
                blame: Some(Reason::FailedHealthChecks),
                counter: None,
                error: None,
            }
        }
        Failure::Stale { .. } | Failure::Reset => target_failed(502),
        Failure::Timeout => Verdict {
            next: Next::Answer(504),
            blame: Some(Reason::Timeout),
            counter: Some(Counter::Response),
            error: Some("target_timeout"),
        },
        Failure::InvalidHead { too_large } => Verdict {
            error: Some(if too_large {
                "target_head_too_large"
            } else {
                "target_failed"
            }),
            ..target_failed(502)
        },
        Failure::BodyBroken => Verdict {
            next: Next::Close,
            blame: Some(Reason::FailedHealthChecks),
            counter: Some(Counter::Response),
            error: None,
        },
        Failure::Client(client) => {
            let (next, error) = match client {
                ClientFailure::Stalled => (Next::AnswerAndClose(408), "client_body_stalled"),
                ClientFailure::TooLarge => (Next::AnswerAndClose(413), "body_too_large"),
                ClientFailure::Broken => (Next::AnswerAndClose(400), "client_body"),
                ClientFailure::Framing => (Next::AnswerAndClose(400), "client_body_framing"),
                ClientFailure::Gone => (Next::Close, "client_body"),
            };
            Verdict {
                next,
                blame: None,
                counter: None,
                error: Some(error),
            }
        }
    }
}

impl Verdict {
    /// Charges the failure to target `index` of `group`: its counter, a
    /// warning naming the target and `what` happened, and the failed passive
    /// health check. A failure that is not the target's charges nothing.
    pub fn charge(&self, group: &GroupRuntime, index: usize, what: &dyn std::fmt::Display) {
        match self.counter {
            Some(Counter::Connection) => group.metrics.connection_errors.inc(),
            Some(Counter::Response) => group.metrics.response_errors.inc(),
            None => {}
        }
        if let Some(reason) = self.blame {
            let target = &group.targets[index];
            tracing::warn!(target_group = %group.name, target = %target.address, "{what}");
            group.record(index, Outcome::Failure(reason));
        }
    }
}

/// A target broke off a response body already under way (the head went to
/// the client): charged as [`decide`] says for [`Failure::BodyBroken`]; the
/// caller closes the client connection.
pub fn body_broken(group: &GroupRuntime, index: usize, what: &dyn std::fmt::Display) {
    let request = Request {
        replayable: false,
        reused: false,
    };
    decide(Failure::BodyBroken, request, Tried::default(), 1).charge(group, index, what);
}

/// Whether a request of `method` may be sent twice (RFC 9110 §9.2.2).
pub fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Request = Request {
        replayable: true,
        reused: false,
    };
    const FRESH_POST: Request = Request {
        replayable: false,
        reused: false,
    };
    const POOLED_GET: Request = Request {
        replayable: true,
        reused: true,
    };
    const POOLED_POST: Request = Request {
        replayable: false,
        reused: true,
    };

    #[test]
    fn a_failed_connect_moves_the_request_once_and_blames_the_target() {
        let v = decide(
            Failure::Connect { timed_out: false },
            FRESH,
            Tried::default(),
            1,
        );
        assert_eq!(v.next, Next::Failover);
        assert_eq!(v.blame, Some(Reason::FailedHealthChecks));
        assert_eq!(v.counter, Some(Counter::Connection));
        let tried = Tried {
            failovers: 1,
            ..Tried::default()
        };
        let v = decide(Failure::Connect { timed_out: true }, FRESH, tried, 1);
        assert_eq!(v.next, Next::Answer(502));
        assert_eq!(v.blame, Some(Reason::Timeout));
        assert_eq!(v.error, Some("connect_failed"));
        // L4 connections may try two more targets.
        assert_eq!(
            decide(Failure::Connect { timed_out: false }, FRESH, tried, 2).next,
            Next::Failover
        );
    }

    #[test]
    fn the_keep_alive_race_costs_nothing_when_it_is_safe() {
        for (failure, request) in [
            (Failure::Stale { unsent: false }, POOLED_GET),
            (Failure::Stale { unsent: true }, POOLED_GET),
            // Known unsent: even a POST goes again.
            (Failure::Stale { unsent: true }, POOLED_POST),
        ] {
            let v = decide(failure, request, Tried::default(), 1);
            assert_eq!(
                (v.next, v.blame, v.counter),
                (Next::Again, None, None),
                "{failure:?} {request:?}"
            );
        }
        // A POST that may have been read: the target's failure.
        for (failure, request) in [
            (Failure::Stale { unsent: false }, POOLED_POST),
            (Failure::Stale { unsent: false }, FRESH_POST),
        ] {
            let v = decide(failure, request, Tried::default(), 1);
            assert_eq!(v.next, Next::Answer(502));
            assert_eq!(v.blame, Some(Reason::FailedHealthChecks));
            assert_eq!(v.counter, Some(Counter::Response));
        }
    }

    #[test]
    fn a_reset_after_sending_replays_only_what_is_safe_and_only_once() {
        let v = decide(Failure::Reset, POOLED_GET, Tried::default(), 1);
        assert_eq!(
            (v.next, v.blame),
            (Next::Replay, Some(Reason::FailedHealthChecks))
        );
        let replayed = Tried {
            replayed: true,
            ..Tried::default()
        };
        assert_eq!(
            decide(Failure::Reset, POOLED_GET, replayed, 1).next,
            Next::Answer(502)
        );
        assert_eq!(
            decide(Failure::Reset, POOLED_POST, Tried::default(), 1).next,
            Next::Answer(502)
        );
        // A fresh connection closed or reset under a GET: the target died
        // with the request in it; the GET goes once more, a POST does not.
        for failure in [Failure::Reset, Failure::Stale { unsent: false }] {
            assert_eq!(
                decide(failure, FRESH, Tried::default(), 1).next,
                Next::Replay,
                "{failure:?}"
            );
            assert_eq!(decide(failure, FRESH, replayed, 1).next, Next::Answer(502));
            assert_eq!(
                decide(failure, FRESH_POST, Tried::default(), 1).next,
                Next::Answer(502)
            );
        }
    }

    #[test]
    fn timeouts_and_bad_heads_are_the_targets() {
        let v = decide(Failure::Timeout, POOLED_GET, Tried::default(), 1);
        assert_eq!(
            (v.next, v.blame, v.error),
            (
                Next::Answer(504),
                Some(Reason::Timeout),
                Some("target_timeout")
            )
        );
        let v = decide(
            Failure::InvalidHead { too_large: true },
            FRESH,
            Tried::default(),
            1,
        );
        assert_eq!(
            (v.next, v.error),
            (Next::Answer(502), Some("target_head_too_large"))
        );
        let v = decide(Failure::BodyBroken, FRESH, Tried::default(), 1);
        assert_eq!((v.next, v.counter), (Next::Close, Some(Counter::Response)));
    }

    #[test]
    fn a_clients_failure_is_never_the_targets() {
        for (client, next) in [
            (ClientFailure::Stalled, Next::AnswerAndClose(408)),
            (ClientFailure::TooLarge, Next::AnswerAndClose(413)),
            (ClientFailure::Broken, Next::AnswerAndClose(400)),
            (ClientFailure::Framing, Next::AnswerAndClose(400)),
            (ClientFailure::Gone, Next::Close),
        ] {
            let v = decide(Failure::Client(client), POOLED_POST, Tried::default(), 1);
            assert_eq!(
                (v.next, v.blame, v.counter),
                (next, None, None),
                "{client:?}"
            );
        }
    }
}

//! Compiled actions: forward (to one group or split among several, optionally
//! sticky by `balance::sticky`), redirect, fixed response.

use super::redirect::RedirectAction;
use crate::balance::cookie::CookieKeys;
use crate::balance::sticky::GroupStickiness;
use crate::balance::{Pick, SmoothWeightedRoundRobin};
use crate::telemetry::metrics::RouteMetrics;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

/// What routing needs to know of a target group: its name (the `EDGELBTG`
/// cookie names it). Routing does not depend on the runtime's groups; the
/// runtime plugs its own in (`runtime::target::GroupRuntime`).
pub trait NamedGroup {
    fn name(&self) -> &str;
}

/// No group at all: for tables that only redirect or answer (tests, benches).
impl NamedGroup for () {
    fn name(&self) -> &str {
        ""
    }
}

/// A compiled action, ready for the hot path.
pub enum RouteAction<G> {
    Forward(ForwardAction<G>),
    Redirect(RedirectAction),
    Fixed(FixedAction),
    /// A login (SPEC §9) before the action.
    Authenticated(Box<Authenticated<G>>),
}

/// `authenticate` beside an action.
pub struct Authenticated<G> {
    pub gate: Arc<crate::oidc::gate::Gate>,
    pub action: RouteAction<G>,
}

/// One group a forward may send to.
pub struct GroupChoice<G> {
    pub group: Arc<G>,
    pub weight: u32,
    /// Metric handles of this listener × group.
    pub metrics: RouteMetrics,
}

/// Forward to one of `choices`.
pub struct ForwardAction<G> {
    pub choices: Vec<GroupChoice<G>>,
    split: SmoothWeightedRoundRobin,
    pub stickiness: Option<GroupStickiness>,
}

/// The group a request goes to and, for sticky forwards, the cookie to set.
pub struct GroupPick<'a, G> {
    pub choice: &'a GroupChoice<G>,
    pub set_cookie: Option<HeaderValue>,
}

impl<G: NamedGroup> ForwardAction<G> {
    /// A forward over `choices` (weights as configured).
    pub fn new(choices: Vec<GroupChoice<G>>, stickiness: Option<GroupStickiness>) -> Self {
        let split = SmoothWeightedRoundRobin::new(choices.len());
        ForwardAction {
            choices,
            split,
            stickiness,
        }
    }

    /// Picks the group: a valid `EDGELBTG` cookie naming a group of this forward
    /// with a weight keeps the client there; otherwise smooth WRR over weights.
    pub fn pick(&self, headers: &HeaderMap, keys: &CookieKeys) -> GroupPick<'_, G> {
        if self.choices.len() == 1 {
            return GroupPick {
                choice: &self.choices[0],
                set_cookie: None,
            };
        }
        let Some(sticky) = &self.stickiness else {
            return GroupPick {
                choice: &self.choices[self.split_pick()],
                set_cookie: None,
            };
        };
        let kept = sticky.kept(headers, keys).and_then(|name| {
            self.choices
                .iter()
                .position(|c| c.weight > 0 && c.group.name().as_bytes() == name.as_slice())
        });
        let index = kept.unwrap_or_else(|| self.split_pick());
        let choice = &self.choices[index];
        GroupPick {
            choice,
            set_cookie: sticky.set_cookie(choice.group.name(), keys),
        }
    }

    /// The group for a request when no cookie can matter: `None` for a
    /// sticky forward over several groups (its cookie decides; see [`Self::pick`]).
    pub fn pick_without_cookies(&self) -> Option<&GroupChoice<G>> {
        match self.choices.len() {
            1 => Some(&self.choices[0]),
            _ if self.stickiness.is_some() => None,
            _ => Some(&self.choices[self.split_pick()]),
        }
    }

    fn split_pick(&self) -> usize {
        self.split
            .pick(self.choices.len(), |i| self.choices[i].weight, |_| 0)
            .unwrap_or(0)
    }
}

/// A response written by the load balancer itself.
pub struct FixedAction {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

impl FixedAction {
    /// Compiles a validated fixed response.
    pub fn compile(f: &crate::config::FixedResponse) -> Self {
        FixedAction {
            status: StatusCode::from_u16(f.status).unwrap_or(StatusCode::OK),
            content_type: HeaderValue::from_str(&f.content_type)
                .unwrap_or(HeaderValue::from_static("text/plain")),
            body: Bytes::from(f.body.clone()),
        }
    }
}

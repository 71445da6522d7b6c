//! Routing: what a listener does with a request. This build has the default
//! action of a listener; rules come with the rule engine.

use crate::admin::metrics::RouteMetrics;
use crate::runtime::target::GroupRuntime;
use std::sync::Arc;

/// A compiled action, ready for the hot path.
pub enum RouteAction {
    /// Forward to a target group.
    Forward(ForwardAction),
}

/// Forward to one target group, with the metric handles of this listener × group.
pub struct ForwardAction {
    pub group: Arc<GroupRuntime>,
    pub metrics: RouteMetrics,
}

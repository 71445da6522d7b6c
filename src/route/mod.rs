//! Routing: what a listener does with a request. Conditions and patterns are
//! pure functions of a request head, unit-tested without sockets; the rule
//! table is compiled once per snapshot.

pub mod action;
pub mod conditions;
pub mod pattern;
pub mod prefix_index;
pub mod redirect;
pub mod request;
pub mod table;

pub use action::{Authenticated, FixedAction, ForwardAction, GroupChoice, NamedGroup, RouteAction};
pub use request::RequestView;
pub use table::{CompiledRule, RuleTable, Selected};

//! A listener's rules, compiled: the first matching rule by ascending priority
//! wins, else the default action.
//!
//! Rules whose host condition lists only exact names are indexed by host, so a
//! request is tested only against the rules of its own host plus those with no
//! (or a wildcard) host condition — the cost does not grow with the number of
//! other hosts' rules.

use super::action::RouteAction;
use super::conditions::Conditions;
use super::request::RequestView;
use std::collections::HashMap;

/// One compiled rule.
pub struct CompiledRule {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: RouteAction,
}

/// What a request was routed by.
pub struct Selected<'a> {
    pub action: &'a RouteAction,
    /// The priority of the matching rule; `None` for the default action.
    pub priority: Option<u32>,
}

/// A listener's rules and default action.
pub struct RuleTable {
    /// Sorted by ascending priority.
    rules: Vec<CompiledRule>,
    /// Lower-case exact host → indices (ascending) of the rules that need it.
    by_host: HashMap<Box<[u8]>, Vec<u32>>,
    /// Indices (ascending) of rules without an exact-hosts-only condition.
    any_host: Vec<u32>,
    default: RouteAction,
}

/// Longest host looked up in the exact-host index (DNS names are ≤ 253).
const MAX_HOST: usize = 255;

impl RuleTable {
    /// A table over `rules` (any order) with `default`.
    pub fn new(mut rules: Vec<CompiledRule>, default: RouteAction) -> Self {
        rules.sort_by_key(|r| r.priority);
        let mut by_host: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut any_host = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let exact: Option<Vec<&[u8]>> = rule
                .conditions
                .host
                .as_ref()
                .and_then(|hosts| hosts.iter().map(|p| p.exact()).collect());
            match exact {
                Some(hosts) => {
                    for h in hosts {
                        let list = by_host.entry(h.into()).or_default();
                        if list.last() != Some(&(i as u32)) {
                            list.push(i as u32);
                        }
                    }
                }
                None => any_host.push(i as u32),
            }
        }
        RuleTable {
            rules,
            by_host,
            any_host,
            default,
        }
    }

    /// The action for a request.
    pub fn select(&self, request: &RequestView) -> Selected<'_> {
        if self.rules.is_empty() {
            return Selected {
                action: &self.default,
                priority: None,
            };
        }
        let mut lower = [0u8; MAX_HOST];
        let for_host: &[u32] = if !self.by_host.is_empty() && request.host.len() <= MAX_HOST {
            let host = &mut lower[..request.host.len()];
            host.copy_from_slice(request.host);
            host.make_ascii_lowercase();
            self.by_host.get(&*host).map_or(&[], |v| v.as_slice())
        } else {
            &[]
        };
        // Merge the two ascending index lists, testing rules in priority order.
        let (mut a, mut b) = (0, 0);
        loop {
            let next = match (for_host.get(a), self.any_host.get(b)) {
                (Some(&x), Some(&y)) if x < y => {
                    a += 1;
                    x
                }
                (_, Some(&y)) => {
                    b += 1;
                    y
                }
                (Some(&x), None) => {
                    a += 1;
                    x
                }
                (None, None) => break,
            };
            let rule = &self.rules[next as usize];
            if rule.conditions.matches(request) {
                return Selected {
                    action: &rule.action,
                    priority: Some(rule.priority),
                };
            }
        }
        Selected {
            action: &self.default,
            priority: None,
        }
    }

    /// The default action.
    pub fn default_action(&self) -> &RouteAction {
        &self.default
    }

    /// Every action of the table (default last), for status and health views.
    pub fn actions(&self) -> impl Iterator<Item = &RouteAction> {
        self.rules
            .iter()
            .map(|r| &r.action)
            .chain(std::iter::once(&self.default))
    }
}

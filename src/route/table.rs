//! A listener's rules, compiled: the first matching rule by ascending priority
//! wins, else the default action.
//!
//! Rules are indexed so that a request is tested only against rules that
//! could match it: rules whose host condition lists only exact names by host,
//! the others whose path condition lists only patterns with a literal start by
//! that start (a byte trie, `prefix_index`), and only the rest are tested for
//! every request. The cost does not grow with the number of other hosts' or
//! other paths' rules: 1,000 such rules cost what a handful do.

use super::action::RouteAction;
use super::conditions::Conditions;
use super::prefix_index::PrefixIndex;
use super::request::RequestView;
use std::collections::HashMap;

/// One compiled rule.
pub struct CompiledRule<G> {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: RouteAction<G>,
}

/// What a request was routed by.
pub struct Selected<'a, G> {
    pub action: &'a RouteAction<G>,
    /// The priority of the matching rule; `None` for the default action.
    pub priority: Option<u32>,
}

/// A listener's rules and default action.
pub struct RuleTable<G> {
    /// Sorted by ascending priority.
    rules: Vec<CompiledRule<G>>,
    /// Lower-case exact host → indices (ascending) of the rules that need it.
    by_host: HashMap<Box<[u8]>, Vec<u32>>,
    /// Rules without an exact-hosts-only condition, by the literal starts of
    /// their path patterns.
    by_path: PrefixIndex,
    /// Indices (ascending) of the rules in neither index.
    unindexed: Vec<u32>,
    default: RouteAction<G>,
}

/// Longest host looked up in the exact-host index (DNS names are ≤ 253).
const MAX_HOST: usize = 255;

impl<G> RuleTable<G> {
    /// A table over `rules` (any order) with `default`.
    pub fn new(mut rules: Vec<CompiledRule<G>>, default: RouteAction<G>) -> Self {
        rules.sort_by_key(|r| r.priority);
        let mut by_host: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut by_path = PrefixIndex::default();
        let mut unindexed = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let i = i as u32;
            let exact: Option<Vec<&[u8]>> = rule
                .conditions
                .host
                .as_ref()
                .and_then(|hosts| hosts.iter().map(|p| p.exact()).collect());
            let starts: Option<Vec<&[u8]>> = rule.conditions.path.as_ref().and_then(|paths| {
                paths
                    .iter()
                    .map(|p| {
                        let start = p.literal_prefix();
                        (!start.is_empty() && !p.ignores_case()).then_some(start)
                    })
                    .collect()
            });
            match (exact, starts) {
                (Some(hosts), _) => {
                    for h in hosts {
                        let list = by_host.entry(h.into()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                (None, Some(starts)) => {
                    for start in starts {
                        by_path.insert(start, i);
                    }
                }
                (None, None) => unindexed.push(i),
            }
        }
        RuleTable {
            rules,
            by_host,
            by_path,
            unindexed,
            default,
        }
    }

    /// The lowest index in `candidates` (ascending) below `best` whose rule
    /// matches, else `best`.
    #[inline]
    fn first_match(&self, candidates: &[u32], best: u32, request: &RequestView) -> u32 {
        for &i in candidates {
            if i >= best {
                break;
            }
            if self.rules[i as usize].conditions.matches(request) {
                return i;
            }
        }
        best
    }

    /// The action for a request.
    pub fn select(&self, request: &RequestView) -> Selected<'_, G> {
        if self.rules.is_empty() {
            return Selected {
                action: &self.default,
                priority: None,
            };
        }
        let mut best = u32::MAX;
        if !self.by_host.is_empty() && request.host.len() <= MAX_HOST {
            let mut lower = [0u8; MAX_HOST];
            let host = &mut lower[..request.host.len()];
            host.copy_from_slice(request.host);
            host.make_ascii_lowercase();
            if let Some(list) = self.by_host.get(&*host) {
                best = self.first_match(list, best, request);
            }
        }
        best = self.first_match(&self.unindexed, best, request);
        if !self.by_path.is_empty() {
            self.by_path.for_each_prefix(&request.path, |list| {
                best = self.first_match(list, best, request);
            });
        }
        match self.rules.get(best as usize) {
            Some(rule) => Selected {
                action: &rule.action,
                priority: Some(rule.priority),
            },
            None => Selected {
                action: &self.default,
                priority: None,
            },
        }
    }

    /// The default action.
    pub fn default_action(&self) -> &RouteAction<G> {
        &self.default
    }

    /// Every action of the table (default last), for status and health views.
    pub fn actions(&self) -> impl Iterator<Item = &RouteAction<G>> {
        self.rules
            .iter()
            .map(|r| &r.action)
            .chain(std::iter::once(&self.default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Conditions as ConditionsConfig, FixedResponse};
    use crate::route::FixedAction;
    use std::net::IpAddr;

    fn fixed(status: u16) -> RouteAction<()> {
        RouteAction::Fixed(FixedAction::compile(&FixedResponse {
            status,
            content_type: "text/plain".into(),
            body: String::new(),
        }))
    }

    fn status(action: &RouteAction<()>) -> u16 {
        match action {
            RouteAction::Fixed(f) => f.status.as_u16(),
            _ => unreachable!(),
        }
    }

    /// Every kind of rule: indexed by host, by path start, and neither; with
    /// priorities deliberately out of the order of the index lists.
    fn conditions(i: u32) -> ConditionsConfig {
        let mut c = ConditionsConfig::default();
        match i % 6 {
            0 => c.host = Some(vec![format!("h{}.example", i % 4)]),
            1 => c.path = Some(vec![format!("/a/{}*", i % 5), "/b/*".into()]),
            2 => c.path = Some(vec!["*.css".into()]),
            3 => {
                c.host = Some(vec!["*.example".into()]);
                c.path = Some(vec![format!("/a/{}", i % 3)]);
            }
            4 => c.path = Some(vec!["/a/?x*".into(), "/".into()]),
            _ => {
                c.host = Some(vec![format!("h{}.example", i % 3)]);
                c.path = Some(vec!["/b/*".into()]);
            }
        }
        c
    }

    #[test]
    fn indexed_selection_agrees_with_testing_every_rule_in_order() {
        let n = 60u32;
        // Priorities: a permutation, so rules are not in insertion order.
        let priority = |i: u32| (i * 37) % n + 1;
        let rules: Vec<CompiledRule<()>> = (0..n)
            .map(|i| CompiledRule {
                priority: priority(i),
                conditions: Conditions::compile(&conditions(i)),
                action: fixed(200 + i as u16),
            })
            .collect();
        let table = RuleTable::new(rules, fixed(599));
        let mut linear: Vec<(u32, Conditions, u16)> = (0..n)
            .map(|i| {
                (
                    priority(i),
                    Conditions::compile(&conditions(i)),
                    200 + i as u16,
                )
            })
            .collect();
        linear.sort_by_key(|r| r.0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let hosts = [
            "h0.example",
            "h1.example",
            "H2.Example",
            "x.example",
            "other",
        ];
        let paths = [
            "/", "/a/1", "/a/12", "/a/2", "/a/0x", "/a/3", "/b/c", "/b", "/s/x.css", "/a/1.css",
        ];
        let mut checked = 0;
        for host in hosts {
            for path in paths {
                let (parts, _) = http::Request::get(path)
                    .header("host", host)
                    .body(())
                    .unwrap()
                    .into_parts();
                let view = RequestView::new(&parts, ip);
                let expected = linear
                    .iter()
                    .find(|r| r.1.matches(&view))
                    .map_or(599, |r| r.2);
                assert_eq!(
                    status(table.select(&view).action),
                    expected,
                    "{host} {path}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 50);
    }
}

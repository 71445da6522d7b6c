//! Targets from DNS (SPEC §12): the last answer of every `dns`/`srv` source,
//! as targets laid over the configuration (like the registry's), and the
//! rules for what an answer, an empty answer or a failure does to them.
//! Pure: the lookups are `control::dns`'s.

use crate::config::{Config, DnsSource, TargetSpec};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Shortest and longest time an answer is kept before it is asked again.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// How long NXDOMAIN or an empty answer must last before a source's targets go.
pub const EMPTY_HOLD: Duration = Duration::from_secs(30);
/// When a source is asked again after a failure or an empty answer.
pub const RETRY: Duration = Duration::from_secs(5);

/// What one lookup of a source gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Targets, and the answer's TTL.
    Found(Vec<TargetSpec>, Duration),
    /// NXDOMAIN, or no record of the type asked.
    Empty,
    /// A timeout, a server failure, a refusal: nothing learned.
    Failed,
}

impl Lookup {
    /// The `result` label of `edgelb_dns_resolutions_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Lookup::Found(..) => "success",
            Lookup::Empty => "nxdomain",
            Lookup::Failed => "error",
        }
    }
}

/// One source's standing answer.
#[derive(Debug, Clone)]
struct Answer {
    targets: Vec<TargetSpec>,
    due: Instant,
    empty_since: Option<Instant>,
}

/// The answers of every source, by (group, source).
#[derive(Debug, Default)]
pub struct DnsAnswers {
    answers: BTreeMap<(String, DnsSource), Answer>,
}

impl DnsAnswers {
    /// The sources of `config`, each with its group.
    pub fn sources(config: &Config) -> Vec<(String, DnsSource)> {
        config
            .target_groups
            .iter()
            .flat_map(|g| g.dns.iter().map(|s| (g.name.clone(), s.clone())))
            .collect()
    }

    /// Adds every answer's targets to their group in `config` (an address a
    /// group already has is not added twice). Sources `config` no longer
    /// has add nothing.
    pub fn apply(&self, config: &mut Config) {
        for g in &mut config.target_groups {
            for source in &g.dns {
                let Some(answer) = self.answers.get(&(g.name.clone(), source.clone())) else {
                    continue;
                };
                for t in &answer.targets {
                    if !g.targets.iter().any(|o| o.address == t.address) {
                        g.targets.push(t.clone());
                    }
                }
            }
        }
    }

    /// Forgets the sources not in `sources`; whether any had targets.
    pub fn retain(&mut self, sources: &[(String, DnsSource)]) -> bool {
        let before: usize = self.answers.values().map(|a| a.targets.len()).sum();
        self.answers.retain(|k, _| sources.contains(k));
        let after: usize = self.answers.values().map(|a| a.targets.len()).sum();
        before != after
    }

    /// Whether `source` (of its group) is to be asked at `now`.
    pub fn is_due(&self, source: &(String, DnsSource), now: Instant) -> bool {
        self.answers.get(source).is_none_or(|a| a.due <= now)
    }

    /// Marks `source` of `group` as asked at `now`: not due again until its
    /// answer is recorded (or `pending` has passed, should it never come).
    pub fn asked(&mut self, group: &str, source: &DnsSource, now: Instant, pending: Duration) {
        self.answer(group, source, now).due = now + pending;
    }

    /// The standing answer of `source`, an empty one due `now` if none yet.
    fn answer(&mut self, group: &str, source: &DnsSource, now: Instant) -> &mut Answer {
        self.answers
            .entry((group.to_owned(), source.clone()))
            .or_insert_with(|| Answer {
                targets: Vec::new(),
                due: now,
                empty_since: None,
            })
    }

    /// When the next source is due (`None`: no source).
    pub fn next_due(&self) -> Option<Instant> {
        self.answers.values().map(|a| a.due).min()
    }

    /// Records what a lookup of `source` gave at `now`; whether the group's
    /// targets changed. A failure keeps the last answer; an empty answer
    /// keeps it until it has lasted [`EMPTY_HOLD`].
    pub fn record(
        &mut self,
        group: &str,
        source: &DnsSource,
        lookup: Lookup,
        now: Instant,
    ) -> bool {
        let answer = self.answer(group, source, now);
        match lookup {
            Lookup::Found(mut targets, ttl) => {
                targets.sort_by(|a, b| a.address.cmp(&b.address));
                targets.dedup_by(|a, b| a.address == b.address);
                answer.empty_since = None;
                answer.due = now + ttl.clamp(MIN_TTL, MAX_TTL);
                let changed = answer.targets != targets;
                answer.targets = targets;
                changed
            }
            Lookup::Empty => {
                let since = *answer.empty_since.get_or_insert(now);
                let held = now.duration_since(since) >= EMPTY_HOLD;
                // Asked again in time to end the hold when it is due.
                let hold_ends = since + EMPTY_HOLD;
                answer.due = if held || hold_ends <= now {
                    now + RETRY
                } else {
                    (now + RETRY).min(hold_ends)
                };
                if held && !answer.targets.is_empty() {
                    answer.targets.clear();
                    return true;
                }
                false
            }
            Lookup::Failed => {
                answer.due = now + RETRY;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn target(address: &str, tier: u16) -> TargetSpec {
        let (host, port) = address.rsplit_once(':').unwrap();
        TargetSpec {
            origin: Origin::Srv("_http._tcp.web".into()),
            tier,
            ..TargetSpec::configured(address.into(), host.into(), port.parse().unwrap(), 5)
        }
    }

    fn source() -> DnsSource {
        DnsSource::Srv {
            name: "_http._tcp.web".into(),
        }
    }

    #[test]
    fn an_answer_is_kept_for_its_ttl_within_bounds() {
        let mut d = DnsAnswers::default();
        let t0 = Instant::now();
        let found = Lookup::Found(
            vec![target("10.0.0.2:80", 0), target("10.0.0.1:80", 0)],
            Duration::ZERO,
        );
        assert!(d.record("g", &source(), found.clone(), t0));
        assert_eq!(d.next_due(), Some(t0 + MIN_TTL));
        assert!(
            !d.record("g", &source(), found, t0),
            "the same set is no change"
        );
        let long = Lookup::Found(vec![target("10.0.0.1:80", 0)], Duration::from_secs(3600));
        assert!(d.record("g", &source(), long, t0));
        assert_eq!(d.next_due(), Some(t0 + MAX_TTL));
        assert!(!d.is_due(&("g".into(), source()), t0 + Duration::from_secs(299)));
        assert!(d.is_due(&("g".into(), source()), t0 + MAX_TTL));
    }

    #[test]
    fn failures_keep_the_set_and_emptiness_must_last() {
        let mut d = DnsAnswers::default();
        let t0 = Instant::now();
        let found = Lookup::Found(vec![target("10.0.0.1:80", 0)], Duration::from_secs(10));
        d.record("g", &source(), found.clone(), t0);
        assert!(!d.record("g", &source(), Lookup::Failed, t0));
        assert!(!d.record("g", &source(), Lookup::Empty, t0));
        assert!(!d.record("g", &source(), Lookup::Empty, t0 + Duration::from_secs(29)));
        assert_eq!(
            d.next_due(),
            Some(t0 + EMPTY_HOLD),
            "asked again when the hold ends"
        );
        let text = "[[listeners]]\nname = \"l\"\nprotocol = \"http\"\nbind = \"127.0.0.1:1\"\n\
            default_action = { forward = \"g\" }\n[[target_groups]]\nname = \"g\"\n\
            protocol = \"http\"\ntargets = [ { srv = \"_http._tcp.web\" } ]\n";
        let mut config = crate::config::parse(text, std::path::Path::new("t.toml"))
            .unwrap()
            .config;
        d.apply(&mut config);
        assert_eq!(config.target_groups[0].targets.len(), 1, "still served");
        assert!(d.record("g", &source(), Lookup::Empty, t0 + EMPTY_HOLD));
        // An answer in between restarts the hold.
        d.record("g", &source(), found, t0 + Duration::from_secs(40));
        assert!(!d.record("g", &source(), Lookup::Empty, t0 + Duration::from_secs(41)));
        assert!(!d.record("g", &source(), Lookup::Empty, t0 + Duration::from_secs(70)));
        assert!(d.record("g", &source(), Lookup::Empty, t0 + Duration::from_secs(71)));
    }

    #[test]
    fn sources_that_left_the_configuration_are_forgotten() {
        let mut d = DnsAnswers::default();
        let t0 = Instant::now();
        d.record(
            "g",
            &source(),
            Lookup::Found(vec![target("10.0.0.1:80", 0)], MIN_TTL),
            t0,
        );
        assert!(!d.retain(&[("g".into(), source())]));
        assert!(d.retain(&[]));
        assert_eq!(d.next_due(), None);
    }
}

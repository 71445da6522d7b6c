//! Wildcard patterns of rule conditions: `*` any run of characters, `?` one.
//!
//! A pattern is compiled once per snapshot into the cheapest form that matches
//! it (exact, prefix, suffix, anything) and otherwise into a general matcher
//! that runs in O(pattern × input) at worst — no backtracking blow-up, no regex,
//! no allocation per match.

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
    /// Compare ASCII letters without case (the pattern is stored lower-case).
    ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Any,
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    General(Box<[u8]>),
}

fn eq_bytes(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

impl Pattern {
    /// Compiles `text`; with `ignore_case`, matching ignores ASCII case.
    pub fn new(text: &str, ignore_case: bool) -> Self {
        let bytes: Box<[u8]> = if ignore_case {
            text.to_ascii_lowercase().into_bytes().into()
        } else {
            text.as_bytes().into()
        };
        let wild = |b: &u8| *b == b'*' || *b == b'?';
        let kind = if bytes.iter().all(|b| *b == b'*') && !bytes.is_empty() {
            Kind::Any
        } else if !bytes.iter().any(wild) {
            Kind::Exact(bytes)
        } else if bytes.last() == Some(&b'*') && !bytes[..bytes.len() - 1].iter().any(wild) {
            Kind::Prefix(bytes[..bytes.len() - 1].into())
        } else if bytes.first() == Some(&b'*') && !bytes[1..].iter().any(wild) {
            Kind::Suffix(bytes[1..].into())
        } else {
            Kind::General(bytes)
        };
        Pattern { kind, ignore_case }
    }

    /// The exact text this pattern matches, when it has no wildcard.
    pub fn exact(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Exact(b) => Some(b),
            _ => None,
        }
    }

    /// The literal text every match starts with (before the first wildcard);
    /// case-folded when the pattern ignores case.
    pub fn literal_prefix(&self) -> &[u8] {
        match &self.kind {
            Kind::Any | Kind::Suffix(_) => b"",
            Kind::Exact(p) | Kind::Prefix(p) => p,
            Kind::General(p) => {
                let end = p
                    .iter()
                    .position(|b| *b == b'*' || *b == b'?')
                    .unwrap_or(p.len());
                &p[..end]
            }
        }
    }

    /// Whether the pattern ignores ASCII case.
    pub fn ignores_case(&self) -> bool {
        self.ignore_case
    }

    /// Whether `input` matches.
    #[inline]
    pub fn matches(&self, input: &[u8]) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            Kind::Any => true,
            Kind::Exact(p) => eq_bytes(p, input, ic),
            Kind::Prefix(p) => input.len() >= p.len() && eq_bytes(p, &input[..p.len()], ic),
            Kind::Suffix(p) => {
                input.len() >= p.len() && eq_bytes(p, &input[input.len() - p.len()..], ic)
            }
            Kind::General(p) => wildcard_match(p, input, ic),
        }
    }
}

/// The classic iterative wildcard match: on a mismatch after a `*`, retry from
/// one character further; each `*` only remembers the latest star, so the work
/// is bounded by pattern length × input length.
fn wildcard_match(pattern: &[u8], input: &[u8], ignore_case: bool) -> bool {
    let same = |p: u8, c: u8| {
        p == b'?'
            || if ignore_case {
                p == c.to_ascii_lowercase()
            } else {
                p == c
            }
    };
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < input.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pattern.len() && same(pattern[p], input[i]) {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p, false).matches(s.as_bytes())
    }

    #[test]
    fn forms() {
        assert_eq!(Pattern::new("*", false).kind, Kind::Any);
        assert!(matches!(Pattern::new("/a", false).kind, Kind::Exact(_)));
        assert!(matches!(Pattern::new("/a/*", false).kind, Kind::Prefix(_)));
        assert!(matches!(Pattern::new("*.jpg", false).kind, Kind::Suffix(_)));
        assert!(matches!(
            Pattern::new("/a/*/b", false).kind,
            Kind::General(_)
        ));
        assert!(matches!(Pattern::new("/a?", false).kind, Kind::General(_)));
    }

    #[test]
    fn wildcards() {
        assert!(m("/v1/*", "/v1/users"));
        assert!(m("/v1/*", "/v1/"));
        assert!(!m("/v1/*", "/v1"));
        assert!(m("*.png", "/img/a.png"));
        assert!(m("/a/*/c", "/a/b/c"));
        assert!(m("/a/*/c", "/a/b/x/c"));
        assert!(!m("/a/*/c", "/a/b/x/d"));
        assert!(m("/a?c", "/abc"));
        assert!(!m("/a?c", "/ac"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("**", "anything"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn case_rules() {
        let host = Pattern::new("*.Example.COM", true);
        assert!(host.matches(b"API.example.com"));
        assert!(!host.matches(b"example.org"));
        assert!(Pattern::new("API.example.com", true).matches(b"api.EXAMPLE.com"));
        assert!(Pattern::new("a?C*", true).matches(b"AbcDEF"));
        let path = Pattern::new("/Admin/*", false);
        assert!(path.matches(b"/Admin/x"));
        assert!(!path.matches(b"/admin/x"));
    }

    #[test]
    fn no_blow_up_on_hostile_input() {
        let pattern = Pattern::new(&"*a".repeat(64), false);
        // Exponential backtracking would never finish this; ours is quadratic at worst.
        let input = "a".repeat(4000) + "b";
        assert!(!pattern.matches(input.as_bytes()));
    }
}

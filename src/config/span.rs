//! Positions in the configuration file: a path into the document (as validation
//! and the unknown-key tracker name it) is turned into `LINE:COL`.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key of a table.
    Key(String),
    /// An element of an array (or array of tables).
    Index(usize),
}

/// A path into the document, from the root.
pub type DocPath = Vec<Seg>;

/// What part of a key/value pair a position should point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The key itself (unknown keys, duplicates).
    Key,
    /// The value (bad values).
    Value,
}

/// The parsed document with spans, kept beside the typed config to place errors.
pub struct SpanIndex<'a> {
    source: &'a str,
    root_value: Spanned<DeValue<'a>>,
}

impl<'a> SpanIndex<'a> {
    /// Parses `source`; a syntax error is returned as (message, byte offset).
    pub fn parse(source: &'a str) -> Result<Self, toml::de::Error> {
        let root = DeTable::parse(source)?;
        let span = root.span();
        let root_value = Spanned::new(span, DeValue::Table(root.into_inner()));
        Ok(SpanIndex { source, root_value })
    }

    /// The 1-based (line, column) of `path`: its value (or key), or the nearest
    /// enclosing item that exists when the path names a missing key.
    pub fn position(&self, path: &[Seg], anchor: Anchor) -> (usize, usize) {
        line_col(self.source, self.offset(path, anchor))
    }

    fn offset(&self, path: &[Seg], anchor: Anchor) -> usize {
        let mut current: &Spanned<DeValue> = &self.root_value;
        let mut best = self.root_value.span().start;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = match (seg, current.get_ref()) {
                (Seg::Key(k), DeValue::Table(t)) => {
                    let Some((key, value)) = t.get_key_value(k.as_str()) else {
                        break;
                    };
                    if last && anchor == Anchor::Key {
                        return key.span().start;
                    }
                    best = match value.get_ref() {
                        DeValue::Table(_) | DeValue::Array(_) => key.span().start,
                        _ => value.span().start,
                    };
                    value
                }
                (Seg::Index(n), DeValue::Array(a)) => {
                    let Some(value) = a.get(*n) else { break };
                    best = match value.get_ref() {
                        // An entry of an array of tables: its header, or its first key.
                        DeValue::Table(t) => t
                            .iter()
                            .map(|(k, _)| k.span().start)
                            .min()
                            .map_or(value.span().start, |k| k.min(value.span().start)),
                        _ => value.span().start,
                    };
                    value
                }
                _ => break,
            };
            current = next;
        }
        best
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

//! The configuration: the serde schema (what the file says), validation with
//! `file:line:col` errors, and the typed [`Config`] (what the program means).

pub mod certs;
mod der;
mod duration;
mod model;
mod schema;
mod span;
pub mod trust;
mod validate;

pub use duration::{format_duration, parse_duration};
pub use model::*;
pub use validate::{
    DEFAULT_ADMIN_BIND, DEFAULT_PREFIX, MAX_FIXED_BODY, MAX_PATTERN_LEN, MIN_KEY_BYTES,
    parse_matcher, read_key_file, split_host_port,
};

use schema::RawConfig;
use span::{Anchor, DocPath, Seg, SpanIndex};
use std::fmt;
use std::path::Path;

/// Why a configuration could not be used: every problem, each one line
/// `PATH:LINE:COL: message`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub lines: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// A configuration that validated, with its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `PATH:LINE:COL: message` lines of problems that do not stop the file
    /// (e.g. an expired certificate).
    pub warnings: Vec<String>,
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        lines: vec![format!(
            "{}:1:1: cannot read the configuration: {e}",
            path.display()
        )],
    })?;
    parse(&text, path)
}

/// Parses and validates `text` as if read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_in(text, path, base_dir, validate::Document::Whole)
}

/// The configuration a cluster node serves (SPEC §11): its `local` file's
/// [global], [admin] and [cluster] with the listeners and groups of the
/// shared document `text` (named `shown` in errors; relative paths in it are
/// the local file's). A node with `cluster.bind_ip` binds its listeners there.
pub fn parse_shared(text: &str, shown: &Path, local: &Config) -> Result<Loaded, ConfigError> {
    let base_dir = local
        .source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let document = validate::Document::Shared {
        local_acme: local.acme.is_some(),
    };
    let loaded = parse_in(text, shown, base_dir, document)?;
    let mut listeners = loaded.config.listeners;
    if let Some(ip) = local.cluster.as_ref().and_then(|c| c.bind_ip) {
        for l in &mut listeners {
            l.bind.set_ip(ip);
        }
    }
    Ok(Loaded {
        config: Config {
            listeners,
            target_groups: loaded.config.target_groups,
            acme: loaded.config.acme.or_else(|| local.acme.clone()),
            ..local.clone()
        },
        warnings: loaded.warnings,
    })
}

/// Tells the trimmer, when a parse ends, what its documents held.
struct ParseMemory(usize);

impl Drop for ParseMemory {
    fn drop(&mut self) {
        crate::trim::freed(self.0 as u64 * 40 / 1024);
    }
}

fn parse_in(
    text: &str,
    path: &Path,
    base_dir: &Path,
    document: validate::Document,
) -> Result<Loaded, ConfigError> {
    let shown = path.display().to_string();
    // The parsed documents (a spanned table and a deserializer's) take some
    // 40 times the text while they live: given back to the system once the
    // load settles, so a large configuration's peak does not stay resident.
    let _trim = ParseMemory(text.len());
    let syntax_error = |e: toml::de::Error| {
        let (line, col) = e.span().map_or((1, 1), |s| span::line_col(text, s.start));
        ConfigError {
            lines: vec![format!("{shown}:{line}:{col}: {}", first_line(e.message()))],
        }
    };
    // Positions are needed only for a message: the spanned document is parsed
    // then (a second tree as large as the deserializer's, not held otherwise).
    let index = std::cell::OnceCell::new();
    let index = || index.get_or_init(|| SpanIndex::parse(text).expect("parsed once already"));
    let mut unknown: Vec<DocPath> = Vec::new();
    let deserializer = toml::Deserializer::parse(text).map_err(syntax_error)?;
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |p| unknown.push(doc_path(&p)))
        .map_err(syntax_error)?;
    let mut diagnostics: Vec<validate::Diagnostic> = unknown
        .into_iter()
        .map(|path| {
            let name = match path.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => String::from("?"),
            };
            validate::Diagnostic {
                path,
                anchor: Anchor::Key,
                message: format!("unknown key `{name}`"),
            }
        })
        .collect();
    let render = |d: &validate::Diagnostic| {
        let (line, col) = index().position(&d.path, d.anchor);
        format!("{shown}:{line}:{col}: {}", d.message)
    };
    match validate::validate(&raw, path, base_dir, document) {
        Ok((config, warnings)) if diagnostics.is_empty() => Ok(Loaded {
            config,
            warnings: warnings.iter().map(render).collect(),
        }),
        Ok(_) => Err(ConfigError {
            lines: diagnostics.iter().map(render).collect(),
        }),
        Err(mut errors) => {
            diagnostics.append(&mut errors);
            let mut placed: Vec<((usize, usize), String)> = diagnostics
                .iter()
                .map(|d| (index().position(&d.path, d.anchor), render(d)))
                .collect();
            placed.sort_by_key(|(pos, _)| *pos);
            Err(ConfigError {
                lines: placed.into_iter().map(|(_, l)| l).collect(),
            })
        }
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

fn doc_path(p: &serde_ignored::Path) -> DocPath {
    let mut out = Vec::new();
    fn walk(p: &serde_ignored::Path, out: &mut DocPath) {
        match p {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Seg::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Seg::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    walk(p, &mut out);
    out
}

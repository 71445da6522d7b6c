//! What this build accepts in the file but does not implement yet. `check`
//! passes such a file; `run` refuses it with `not supported yet: <key>` rather
//! than silently ignore a key an operator relies on. Each later capability
//! removes its lines here when it lands.

use super::schema::RawConfig;
use super::span::{DocPath, Seg};

/// `[global]`'s key `k`.
fn global(k: &str) -> DocPath {
    vec![Seg::Key("global".into()), Seg::Key(k.into())]
}

/// The unsupported keys of a raw file, with their paths.
pub(super) fn unsupported_paths(raw: &RawConfig) -> Vec<(DocPath, String)> {
    let mut out = Vec::new();
    if let Some(g) = &raw.global
        && g.access_log.as_deref().is_some_and(|a| a != "off")
    {
        out.push((global("access_log"), "global.access_log".into()));
    }
    out
}

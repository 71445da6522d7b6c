//! `watch_config = true`: reload when the configuration file changes. The
//! file's directory is watched, not the file, so editors that write a new file
//! and rename it over the old one are seen too.

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes closer together than this make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches `path`; each change of it sends a `()` (coalesced by the receiver).
pub fn watch(path: &Path) -> notify::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(16);
    let file: PathBuf = path.file_name().map(PathBuf::from).unwrap_or_default();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(file.as_os_str()))
        {
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// Waits for the next change, then for the burst it starts to settle.
pub async fn next_change(rx: &mut mpsc::Receiver<()>) -> Option<()> {
    rx.recv().await?;
    loop {
        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => return Some(()),
        }
    }
}

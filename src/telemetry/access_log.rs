//! The access log: one JSON line per HTTP request and per TCP connection,
//! written by a thread of its own through a bounded queue. When the disk is
//! slow the queue fills and lines are dropped and counted; requests are never
//! slowed or blocked. SIGUSR1 reopens the file (after logrotate moved it).

use crate::config::AccessLog as Destination;
use prometheus::IntCounter;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// The running access log.
pub struct AccessLog {
    queue: SyncSender<String>,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer for `destination`; `None` when the log is off.
    pub fn start(
        destination: &Destination,
        dropped: IntCounter,
    ) -> std::io::Result<Option<Arc<AccessLog>>> {
        let sink = match destination {
            Destination::Off => return Ok(None),
            Destination::Stdout => Sink::Stdout,
            Destination::File(path) => Sink::File(path.clone(), open(path)?),
        };
        // EDGELB_ACCESS_LOG_QUEUE overrides the queue length (tests use a tiny one).
        let capacity = std::env::var("EDGELB_ACCESS_LOG_QUEUE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(QUEUE);
        let (queue, lines) = sync_channel(capacity);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("edgelb-access-log".into())
            .spawn(move || write_loop(sink, lines, flag))?;
        Ok(Some(Arc::new(AccessLog {
            queue,
            reopen,
            dropped,
        })))
    }

    /// Queues one record; never waits.
    pub fn emit(&self, record: Map<String, Value>) {
        let line = Value::Object(record).to_string();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(line)
        {
            self.dropped.inc();
        }
    }

    /// Reopens the file (logrotate's `postrotate: kill -USR1`).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }
}

enum Sink {
    Stdout,
    File(PathBuf, std::fs::File),
}

fn open(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_loop(mut sink: Sink, lines: Receiver<String>, reopen: Arc<AtomicBool>) {
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                buffer.extend_from_slice(line.as_bytes());
                buffer.push(b'\n');
                // Take what else is queued before writing, in one go.
                while buffer.len() < 1 << 20 {
                    match lines.try_recv() {
                        Ok(line) => {
                            buffer.extend_from_slice(line.as_bytes());
                            buffer.push(b'\n');
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if reopen.swap(false, Ordering::SeqCst)
            && let Sink::File(path, file) = &mut sink
        {
            match open(path) {
                Ok(f) => *file = f,
                Err(e) => tracing::error!("access log: cannot reopen {}: {e}", path.display()),
            }
        }
        if buffer.is_empty() {
            continue;
        }
        let written = match &mut sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&buffer),
            Sink::File(_, f) => f.write_all(&buffer),
        };
        if let Err(e) = written {
            tracing::error!("access log: write failed: {e}");
        }
        buffer.clear();
    }
}

/// RFC 3339 with microseconds, for log times.
pub fn log_time(t: SystemTime) -> String {
    let base = crate::wire::time::rfc3339(t);
    let micros = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!("{}.{micros:06}Z", base.trim_end_matches('Z'))
}

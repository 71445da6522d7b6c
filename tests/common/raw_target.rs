//! A target that records the exact bytes of every request it receives and
//! answers each with bytes the test chooses: for asserting what reached a
//! target byte for byte, and for targets that answer oddly (an unsolicited
//! 101, HTTP/1.0 keep-alive, a Transfer-Encoding other than chunked).
//!
//! Requests are framed as RFC 9112 says (Content-Length, or chunked with
//! CRLF everywhere); health checks (edgelb's User-Agent) are answered 200 and
//! not recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the target answers to one request (its raw bytes); an empty answer
/// closes the connection without a word.
pub type Reply = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// The ordinary answer: 200 with body `ok`.
pub fn ok_reply() -> Reply {
    Arc::new(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
}

/// A fixed answer to every request.
pub fn fixed_reply(bytes: &'static [u8]) -> Reply {
    Arc::new(move |_| bytes.to_vec())
}

/// See the module doc.
pub struct RawTarget {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawTarget {
    /// A target answering 200 `ok`.
    pub async fn start() -> Self {
        Self::start_with(ok_reply()).await
    }

    /// A target answering with `reply`.
    pub async fn start_with(reply: Reply) -> Self {
        // Port 0: the kernel's choice, held from the start (a port picked first
        // and bound after could be taken in between: CI met that once).
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, seen.clone(), reply.clone()));
            }
        });
        RawTarget {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// Every request received so far, as bytes, in order of arrival.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    /// Connections accepted so far (health checks included).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for `n` requests; returns what arrived.
    pub async fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for RawTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>, reply: Reply) {
    let mut buf = Vec::new();
    // Bounded: a connection carries at most 1,000 requests in a test.
    for _ in 0..1000 {
        let len = loop {
            if let Some(len) = request_len(&buf) {
                break len;
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => {
                    if !buf.is_empty() {
                        // An incomplete request: recorded as it is (a test may
                        // assert that a body was cut off).
                        seen.lock().unwrap().push(std::mem::take(&mut buf));
                    }
                    return;
                }
            }
        };
        let request: Vec<u8> = buf.drain(..len).collect();
        let health = request
            .windows(b"edgelb-health-check/".len())
            .any(|w| w == b"edgelb-health-check/");
        let answer = if health {
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        } else {
            let answer = reply(&request);
            seen.lock().unwrap().push(request);
            answer
        };
        if answer.is_empty() || stream.write_all(&answer).await.is_err() || health {
            return;
        }
        let lower = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        let head = lower.split("\r\n\r\n").next().unwrap_or("");
        if head.contains("connection: close") || head.starts_with("http/1.1 101") {
            return;
        }
    }
}

/// The length of the complete request at the start of `buf`, if it is there.
pub fn request_len(buf: &[u8]) -> Option<usize> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut slots);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut chunked = false;
    let mut length = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
        }
    }
    if !chunked {
        return (buf.len() >= head + length).then_some(head + length);
    }
    let mut at = head;
    loop {
        let line_end = find(&buf[at..], b"\r\n")? + at;
        let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let end = find(&buf[at..], b"\r\n")? + at;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some(at);
                }
            }
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

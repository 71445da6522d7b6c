//! Shared test harness: real target servers on 127.0.0.1 ephemeral ports, the
//! real `edgelb` binary, and real HTTP/1.1 and HTTP/2 clients.
#![allow(dead_code)]

pub mod dns_server;
pub mod etcd;
pub mod pebble;
pub mod raw_target;
pub mod tls;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The binary under test.
pub fn edgelb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_edgelb")
}

/// A port free on 127.0.0.1 that no other test of this process was given:
/// ports come from a counter (tests run in parallel threads, and a port the
/// kernel just handed out for `bind(0)` and freed could be handed out again).
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Below the kernel's ephemeral range (32768..), where bind(0) never lands.
    let base = 10000 + (std::process::id() % 100) * 200;
    let _ = NEXT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32768, "ran out of test ports");
        if StdListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// Whether the HTTP/1 fast path serves in this run: the suite runs in both
/// dispatch positions (`EDGELB_TEST_FAST_PATH=off cargo test` for the
/// other), and every edgelb a test starts gets `[global] http1_fast_path`
/// set to match ([`in_dispatch`]).
pub fn fast_path_on() -> bool {
    std::env::var("EDGELB_TEST_FAST_PATH").map_or(true, |v| v != "off")
}

/// `config` with `[global] http1_fast_path = false` when `fast_path` is
/// off: added as the first key of its `[global]` table, or as a `[global]`
/// table at its end (so the lines above keep their numbers).
pub fn in_dispatch(config: &str, fast_path: bool) -> String {
    if fast_path {
        return config.to_string();
    }
    match config.find("[global]\n") {
        Some(at) => {
            let after = at + "[global]\n".len();
            format!(
                "{}http1_fast_path = false\n{}",
                &config[..after],
                &config[after..]
            )
        }
        None => format!("{config}\n[global]\nhttp1_fast_path = false\n"),
    }
}

/// A header line `name: value` as a target sees it from the stack that
/// serves in this run: the client's case on the fast path, lower case from
/// hyper's client.
pub fn seen_line(name: &str, value: &str) -> String {
    if fast_path_on() {
        format!("\r\n{name}: {value}\r\n")
    } else {
        format!("\r\n{}: {value}\r\n", name.to_ascii_lowercase())
    }
}

/// A fresh address on 127.0.0.1 for a listener under test.
pub fn listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Sends raw bytes on a new connection and returns the first line of what comes
/// back before the connection closes (or 5 s pass).
pub async fn raw_status_line(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_exchange(addr, bytes)
        .await
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Sends raw bytes and returns all that comes back until the connection
/// closes (or 5 s pass).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An address on 127.0.0.1 where nothing listens (connections are refused).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a test target saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_len: u64,
}

/// How a test target answers.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Answer with this many bytes of body instead of the name.
    pub body_bytes: Option<u64>,
    /// A `Set-Cookie` header on every answer.
    pub set_cookie: Option<String>,
}

/// What a test target's connections share.
struct TargetState {
    name: String,
    /// Status of health-check answers (200 unless a test says otherwise).
    health_status: Arc<std::sync::atomic::AtomicU16>,
    /// Health checks get no answer at all while set.
    health_hang: Arc<std::sync::atomic::AtomicBool>,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    health_checks: Arc<AtomicUsize>,
}

impl TargetState {
    async fn answer(
        &self,
        req: Request<Incoming>,
        counted: &std::sync::atomic::AtomicBool,
    ) -> hyper::Response<Full<Bytes>> {
        let is_check = req
            .headers()
            .get("user-agent")
            .is_some_and(|ua| ua.as_bytes().starts_with(b"edgelb-health-check"));
        if is_check {
            self.health_checks.fetch_add(1, Ordering::SeqCst);
            if self.health_hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
            *resp.status_mut() =
                StatusCode::from_u16(self.health_status.load(Ordering::SeqCst)).unwrap();
            return resp;
        }
        if !counted.swap(true, Ordering::SeqCst) {
            self.connections.fetch_add(1, Ordering::SeqCst);
        }
        let (parts, mut body) = req.into_parts();
        let mut body_len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map(|f| f.into_data()) {
                body_len += data.map_or(0, |d| d.len() as u64);
            }
        }
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            version: parts.version,
            headers: parts.headers.clone(),
            body_len,
        });
        if let Some(d) = self.behaviour.delay {
            tokio::time::sleep(d).await;
        }
        let body = match self.behaviour.body_bytes {
            Some(n) => Bytes::from(vec![b'x'; n as usize]),
            None if body_len > 0 => Bytes::from(format!("{} {body_len}", self.name)),
            None => Bytes::from(self.name.clone()),
        };
        let mut resp = hyper::Response::new(Full::new(body));
        if let Some(c) = &self.behaviour.set_cookie {
            resp.headers_mut().insert("set-cookie", c.parse().unwrap());
        }
        resp
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 answering `name` to every request
/// (after reading the request body to its end), and recording what it saw.
pub struct TestTarget {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections that carried requests other than edgelb's health checks.
    pub connections: Arc<AtomicUsize>,
    /// edgelb's health checks (kept out of `seen`).
    pub health_checks: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    /// Open connections, cut by `stop`.
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    health_status: Arc<std::sync::atomic::AtomicU16>,
    health_hang: Arc<std::sync::atomic::AtomicBool>,
}

impl TestTarget {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Behaviour::default()).await
    }

    pub async fn start_with(name: &str, behaviour: Behaviour) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(socket, name, behaviour)
    }

    /// Serves on a given address (to bring a stopped target back on its port).
    pub async fn start_on(addr: SocketAddr, name: &str) -> Self {
        let socket = TcpListener::bind(addr).await.unwrap();
        Self::serve(socket, name, Behaviour::default())
    }

    fn serve(socket: TcpListener, name: &str, behaviour: Behaviour) -> Self {
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let health_checks = Arc::new(AtomicUsize::new(0));
        let health_status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let health_hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = Arc::new(TargetState {
            name: name.to_owned(),
            health_status: health_status.clone(),
            health_hang: health_hang.clone(),
            behaviour,
            seen: seen.clone(),
            connections: connections.clone(),
            health_checks: health_checks.clone(),
        });
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let open2 = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                let state = state.clone();
                let mut open = open2.lock().unwrap();
                open.retain(|h| !h.is_finished());
                open.push(
                    tokio::spawn(async move {
                        let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let service = service_fn(move |req: Request<Incoming>| {
                            let (state, counted) = (state.clone(), counted.clone());
                            async move { Ok::<_, Infallible>(state.answer(req, &counted).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    })
                    .abort_handle(),
                );
            }
        });
        TestTarget {
            addr,
            name: name.to_owned(),
            seen,
            connections,
            health_checks,
            task,
            open,
            health_status,
            health_hang,
        }
    }

    /// Answers health checks with `status` from now on.
    pub fn set_health_status(&self, status: u16) {
        self.health_status.store(status, Ordering::SeqCst);
    }

    /// Leaves health checks unanswered (or answers them again).
    pub fn set_health_hang(&self, hang: bool) {
        self.health_hang.store(hang, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the target saw a request")
    }

    /// Stops like a killed process: no more accepts, open connections cut.
    pub async fn stop(&self) {
        self.task.abort();
        for h in self.open.lock().unwrap().drain(..) {
            h.abort();
        }
        // Wait until the listening socket is really closed.
        let addr = self.addr;
        wait_for(
            Duration::from_secs(5),
            "the stopped target's port to refuse",
            || async move { TcpStream::connect(addr).await.is_err() },
        )
        .await;
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the admin API at `admin` answers an HTTP request.
pub async fn admin_answers(admin: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect(admin).await else {
        return false;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let req = Request::get("/healthz")
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), sender.send_request(req)).await,
        Ok(Ok(_))
    )
}

/// A running `edgelb run` process with its own config file; killed on drop.
pub struct Edgelb {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub admin: SocketAddr,
    /// The dispatch position it runs in (kept by [`Edgelb::rewrite`]).
    pub fast_path: bool,
}

impl Edgelb {
    /// Writes `config` (which must use `admin.bind = ADMIN`) and starts edgelb;
    /// returns once the admin API answers.
    pub async fn start(config: &str) -> Self {
        Self::start_limited(config, None).await
    }

    /// As `start`, with the process allowed `nofile` open files (by prlimit).
    pub async fn start_limited(config: &str, nofile: Option<u32>) -> Self {
        Self::start_env(config, nofile, &[]).await
    }

    /// As `start`, the HTTP/1 fast path on or off (`[global]
    /// http1_fast_path`): the two dispatch positions every HTTP/1 behaviour
    /// is tested in.
    pub async fn start_dispatch(config: &str, fast_path: bool) -> Self {
        Self::start_in(config, None, &[], fast_path).await
    }

    /// As `start_limited`, with extra environment variables.
    pub async fn start_env(config: &str, nofile: Option<u32>, env: &[(&str, &str)]) -> Self {
        Self::start_in(config, nofile, env, fast_path_on()).await
    }

    async fn start_in(
        config: &str,
        nofile: Option<u32>,
        env: &[(&str, &str)],
        fast_path: bool,
    ) -> Self {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = in_dispatch(&config.replace("ADMIN", &admin.to_string()), fast_path);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("edgelb.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("edgelb.log")).unwrap();
        let mut command = match nofile {
            None => Command::new(edgelb_bin()),
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(edgelb_bin());
                c
            }
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut e = Edgelb {
            child,
            dir,
            config_path,
            admin,
            fast_path,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = e.child.try_wait() {
                panic!("edgelb exited with {status}:\n{}", e.log());
            }
            // The admin API answers only once every listener is bound.
            if admin_answers(admin).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "edgelb did not start:\n{}",
                e.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        e
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edgelb.log")).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and starts it again on the same files;
    /// returns once the admin API answers.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("edgelb.log"))
            .unwrap();
        self.child = Command::new(edgelb_bin())
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for(
            Duration::from_secs(10),
            "the restarted edgelb's admin API",
            || admin_answers(self.admin),
        )
        .await;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Rewrites the config file (ADMIN replaced and the dispatch position
    /// set as at start).
    pub fn rewrite(&self, config: &str) {
        let config = config.replace("ADMIN", &self.admin.to_string());
        std::fs::write(&self.config_path, in_dispatch(&config, self.fast_path)).unwrap();
    }

    /// Waits for the process to exit and returns its code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "edgelb did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET on the admin API: (status, JSON or text body).
    pub async fn admin_get(&self, path: &str) -> (StatusCode, String) {
        let r = get(self.admin, path).await;
        (r.status, r.text())
    }

    pub async fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/status").await.1).unwrap()
    }

    /// The value of one metric series in a `/metrics` scrape (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.admin_get("/metrics").await.1;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    pub async fn generation(&self) -> u64 {
        self.status_json().await["generation"].as_u64().unwrap()
    }
}

impl Drop for Edgelb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1 { sender }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Got, hyper::Error> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Got {
        let req = Request::get(path)
            .header("host", "test.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await.unwrap()
    }
}

/// One GET on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Got {
    H1::connect(addr).await.get(path).await
}

/// An HTTP/2 client connection by prior knowledge (h2c); clones share it.
#[derive(Clone)]
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        H2 { sender, addr }
    }

    pub async fn get(&mut self, path: &str) -> Got {
        let uri = format!("http://test.local:{}{path}", self.addr.port());
        let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
        self.send(req).await.unwrap()
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Got, hyper::Error> {
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}

/// A config with one http listener forwarding to group `web` with `targets`
/// (address, weight), plus extra TOML appended to the group.
pub fn one_group_config(
    listen: SocketAddr,
    targets: &[(SocketAddr, u32)],
    group_extra: &str,
) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        r#"[global]
drain_timeout = "10s"

[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "http"
bind = "{listen}"
default_action = {{ forward = "web" }}

[[target_groups]]
name = "web"
protocol = "http"
targets = [ {} ]
{group_extra}
"#,
        list.join(", ")
    )
}

/// A line of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// One HTTP/1.1 POST of a JSON `body` to `authority` + `path` on a new
/// connection, within 2 s: the answer's body, or `None`.
pub async fn http_post(authority: &str, path: &str, body: &str) -> Option<String> {
    let exchange = async {
        let stream = TcpStream::connect(authority).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::post(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let resp = sender.send_request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// A TCP forwarder on loopback that a test can cut (every connection
/// through it closed, new ones refused) and restore: a network partition
/// between one client and one server, with both processes running.
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = socket.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let handle = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(handle.abort_handle());
            }
        });
        TcpProxy {
            addr,
            open,
            conns,
            task,
        }
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// One admin API call with a bearer `token` on a new connection: (status, body).
pub async fn admin_call(
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let stream = TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

//! Several nodes, one load balancer (SPEC §11), against a real etcd cluster:
//! three members of Debian's `etcd-server` on loopback ports, started and
//! killed by the tests, and edgelb nodes on 127.0.0.2, .3 and .4 (each
//! node's `cluster.bind_ip`) sharing one pushed configuration.
//!
//! `.ci/run` installs etcd and runs this with `EDGELB_ETCD=1`, which makes
//! its absence a failure; elsewhere the tests are skipped without it.

mod common;

use common::dns_server::DnsServer;
use common::etcd::{EtcdCluster, have_etcd};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "cluster-test-token-0123456789";

fn etcd_available() -> bool {
    let have = have_etcd();
    assert!(
        have || std::env::var_os("EDGELB_ETCD").is_none(),
        "EDGELB_ETCD=1 but etcd is not installed (apt-get install etcd-server)"
    );
    if !have {
        eprintln!("skipped: etcd is not installed (EDGELB_ETCD=1 makes this a failure)");
    }
    have
}

/// A node's local file: [admin], [cluster] and nothing shared.
fn node_config(name: &str, endpoints: &str, ip: &str, token: &Path) -> String {
    format!(
        r#"[global]
drain_timeout = "2s"

[admin]
bind = "ADMIN"
token_file = "{}"

[cluster]
etcd = {endpoints}
prefix = "/edgelb/test"
node_name = "{name}"
cache_file = "cluster-cache.json"
bind_ip = "{ip}"
"#,
        token.display()
    )
}

/// The shared configuration: listener `front` on `port` to group `web`
/// (with `extra` TOML for it), and an unused group `spare`.
fn shared_config(port: u16, targets: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|a| format!("{{ address = \"{a}\", weight = 1 }}"))
        .collect();
    format!(
        r#"[[listeners]]
name = "front"
protocol = "http"
bind = "127.0.0.1:{port}"
default_action = {{ forward = "web" }}

[[target_groups]]
name = "web"
protocol = "http"
deregistration_delay = "30s"
targets = [ {} ]
{extra}
[target_groups.health_check]
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2
path = "/health"

[[target_groups]]
name = "spare"
protocol = "http"
targets = [ {{ address = "{}", weight = 1 }} ]
"#,
        list.join(", "),
        dead_addr()
    )
}

struct Cluster {
    etcd: EtcdCluster,
    nodes: Vec<Edgelb>,
    /// Each node's listener address (its bind_ip and the shared port).
    front: Vec<SocketAddr>,
    port: u16,
    dir: tempfile::TempDir,
    token: std::path::PathBuf,
}

impl Cluster {
    /// `members` etcd members and one node per entry of `endpoints` (the
    /// members that node is told about).
    async fn start(members: usize, endpoints: &[&[usize]]) -> Cluster {
        let etcd = EtcdCluster::start(members).await;
        let toml: Vec<String> = endpoints.iter().map(|w| etcd.endpoints_toml(w)).collect();
        Self::start_on(etcd, &toml).await
    }

    /// One node per entry of `endpoints` (its `[cluster] etcd` value).
    async fn start_on(etcd: EtcdCluster, endpoints: &[String]) -> Cluster {
        Self::start_with(etcd, endpoints, |_| String::new()).await
    }

    /// As [`Cluster::start_on`], with `global(i)` added to node `i`'s
    /// `[global]` table (what each node keeps for itself, such as resolvers).
    async fn start_with(
        etcd: EtcdCluster,
        endpoints: &[String],
        global: impl Fn(usize) -> String,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let port = free_port();
        let mut nodes = Vec::new();
        let mut front = Vec::new();
        for (i, which) in endpoints.iter().enumerate() {
            let ip = format!("127.0.0.{}", i + 2);
            let config = node_config(&format!("n{i}"), which, &ip, &token).replacen(
                "[global]\n",
                &format!("[global]\n{}\n", global(i)),
                1,
            );
            nodes.push(Edgelb::start(&config).await);
            front.push(format!("{ip}:{port}").parse().unwrap());
        }
        Cluster {
            etcd,
            nodes,
            front,
            port,
            dir,
            token,
        }
    }

    /// `edgelb cluster push` of `text` through node `i`: (exit code, stdout, stderr).
    async fn push_cli(&self, i: usize, name: &str, text: &str) -> (i32, String, String) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let admin = format!("http://{}", self.nodes[i].admin);
        let token = self.token.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(edgelb_bin())
                .args(["cluster", "push", "--config"])
                .arg(&path)
                .args(["--admin", &admin, "--token-file"])
                .arg(&token)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Pushes `text` through node `i`'s CLI; its revision.
    async fn push(&self, i: usize, text: &str) -> i64 {
        let (code, out, err) = self.push_cli(i, "shared.toml", text).await;
        assert_eq!(code, 0, "push failed: {out}{err}");
        out.trim()
            .strip_prefix("pushed: revision ")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("push printed {out:?}"))
    }

    /// Waits until node `i` serves configuration `revision`.
    async fn wait_revision(&self, i: usize, revision: i64) {
        let admin = self.nodes[i].admin;
        wait_for(
            Duration::from_secs(10),
            "the pushed revision on a node",
            || async move { cluster_doc(admin).await["revision"].as_i64() == Some(revision) },
        )
        .await;
    }

    /// Waits until node `i`'s listener answers 200 from a target.
    async fn wait_served(&self, i: usize) {
        let addr = self.front[i];
        wait_for(
            Duration::from_secs(15),
            "a node serving its target",
            || async move { try_get(addr, None).await.is_some_and(|(s, _, _)| s == 200) },
        )
        .await;
    }
}

/// `GET /cluster` of the node at `admin`.
async fn cluster_doc(admin: SocketAddr) -> Value {
    serde_json::from_str(&get(admin, "/cluster").await.text()).unwrap_or(Value::Null)
}

/// One admin call with the token: (status, JSON answer).
async fn admin_call(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = common::admin_call(admin, TOKEN, method, path, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn register(admin: SocketAddr, group: &str, address: &str) -> (u16, Value) {
    let body = format!(r#"{{"address": "{address}", "weight": 1}}"#);
    admin_call(
        admin,
        "POST",
        &format!("/target-groups/{group}/targets"),
        &body,
    )
    .await
}

/// The state of `address` in `group` on the node at `admin`, if it is there.
async fn target_state(admin: SocketAddr, group: &str, address: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(
        &get(admin, &format!("/target-groups/{group}/targets"))
            .await
            .text(),
    )
    .ok()?;
    doc["targets"]
        .as_array()?
        .iter()
        .find(|t| t["address"] == address)
        .map(|t| t["state"].as_str().unwrap_or("").to_owned())
}

/// One GET through a node, optionally with a cookie: (status, body,
/// Set-Cookie's `name=value`), or `None` when the exchange failed.
async fn try_get(addr: SocketAddr, cookie: Option<&str>) -> Option<(u16, String, Option<String>)> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let mut req = http::Request::get("/").header("host", "app.test");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            set_cookie,
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Client traffic through some nodes until stopped (at most 2 minutes):
/// every request on a new connection, every answer must be 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(addrs: Vec<SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            for n in 0..200_000usize {
                if s.load(Ordering::SeqCst) || Instant::now() > deadline {
                    return;
                }
                let addr = addrs[n % addrs.len()];
                match try_get(addr, None).await {
                    Some((200, _, _)) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => f.lock().unwrap().push(format!("{addr}: {other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Load {
            stop,
            ok,
            failures,
            task,
        }
    }

    /// Stops the traffic: (requests answered 200, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_one_pushed_configuration_and_share_registrations_and_cookies() {
    if !etcd_available() {
        return;
    }
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let all: &[usize] = &[0, 1, 2];
    let c = Cluster::start(3, &[all, all, all]).await;

    // Before anything is pushed, a node serves its admin API and no listener.
    for n in &c.nodes {
        let status = n.status_json().await;
        assert_eq!(status["listeners"], serde_json::json!([]), "{status}");
        wait_for(
            Duration::from_secs(5),
            "a node connected to etcd",
            || async { cluster_doc(n.admin).await["connected"] == true },
        )
        .await;
    }

    // A push that `check` would refuse: every error with the pushed file's
    // name, exit 1, nothing written.
    let bad = format!(
        "[global]\ndrain_timeout = \"1s\"\n{}",
        shared_config(c.port, &[a.addr], "").replace("forward = \"web\"", "forward = \"nope\"")
    );
    let (code, _, err) = c.push_cli(0, "bad.toml", &bad).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.toml:1:2: [global] in the shared configuration"),
        "{err}"
    );
    assert!(
        err.contains("forward to unknown target group \"nope\""),
        "{err}"
    );
    assert_eq!(cluster_doc(c.nodes[1].admin).await["revision"], 0);

    // Pushed once through node 0: every node serves it.
    let sticky = "stickiness = { type = \"lb_cookie\", duration = \"1h\" }\n";
    let shared = shared_config(c.port, &[a.addr, b.addr], sticky);
    let revision = c.push(0, &shared).await;
    for i in 0..3 {
        c.wait_revision(i, revision).await;
        c.wait_served(i).await;
    }
    // Both targets healthy everywhere before cookies are compared.
    for n in &c.nodes {
        for t in [&a, &b] {
            let (admin, addr) = (n.admin, t.addr.to_string());
            wait_for(Duration::from_secs(15), "targets healthy on every node", || {
                let addr = addr.clone();
                async move { target_state(admin, "web", &addr).await.as_deref() == Some("healthy") }
            })
            .await;
        }
    }

    // A cookie made by node 0 is honoured by nodes 1 and 2 (no key file:
    // the key set was made once in etcd).
    let (_, first, cookie) = try_get(c.front[0], None).await.unwrap();
    let cookie = cookie.expect("node 0 sets the stickiness cookie");
    for i in [1, 2] {
        for _ in 0..6 {
            let (status, body, _) = try_get(c.front[i], Some(&cookie)).await.unwrap();
            assert_eq!((status, body.as_str()), (200, first.as_str()), "node {i}");
        }
    }

    // Registrations through any node are applied by every node, each
    // within 1 s (SPEC §11).
    let mut times = Vec::new();
    for k in 0..12 {
        let address = format!("127.0.0.1:{}", free_port());
        let from = k % 3;
        let started = Instant::now();
        let (status, answer) = register(c.nodes[from].admin, "spare", &address).await;
        assert_eq!(status, 200, "{answer}");
        for (i, n) in c.nodes.iter().enumerate() {
            if i == from {
                // The node that took the call has applied it when it answers.
                assert!(target_state(n.admin, "spare", &address).await.is_some());
                continue;
            }
            let (admin, address) = (n.admin, address.clone());
            wait_for(
                Duration::from_secs(5),
                "a registration on every node",
                || {
                    let address = address.clone();
                    async move { target_state(admin, "spare", &address).await.is_some() }
                },
            )
            .await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "registration to applied on all 3 nodes: median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(times[times.len() - 1] < Duration::from_secs(1), "{times:?}");

    // The same registration twice: 409 from any node.
    let address = format!("127.0.0.1:{}", free_port());
    assert_eq!(register(c.nodes[0].admin, "spare", &address).await.0, 200);
    assert_eq!(register(c.nodes[2].admin, "spare", &address).await.0, 409);

    // A deregistration through node 1 drains the config target b everywhere;
    // the next push brings it back (the pushed file is the truth for its own).
    let (status, answer) = admin_call(
        c.nodes[1].admin,
        "DELETE",
        &format!("/target-groups/web/targets/{}", b.addr),
        "",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for n in &c.nodes {
        assert_eq!(
            target_state(n.admin, "web", &b.addr.to_string())
                .await
                .as_deref(),
            Some("draining")
        );
    }
    let again = c.push(2, &shared).await;
    assert!(again > revision);
    for (i, n) in c.nodes.iter().enumerate() {
        c.wait_revision(i, again).await;
        let state = target_state(n.admin, "web", &b.addr.to_string()).await;
        assert!(state.is_some_and(|s| s != "draining"), "node {i}");
    }

    // Every node's record, and the gauges.
    let admin0 = c.nodes[0].admin;
    wait_for(
        Duration::from_secs(10),
        "three members at the last revision",
        || async move {
            let doc = cluster_doc(admin0).await;
            let members = doc["members"].as_array().cloned().unwrap_or_default();
            members.len() == 3
                && members
                    .iter()
                    .all(|m| m["config_revision"] == again && m["last_reload_ok"] == true)
        },
    )
    .await;
    // `edgelb cluster show` prints the same.
    let admin = format!("http://{admin0}");
    let shown = tokio::task::spawn_blocking(move || {
        std::process::Command::new(edgelb_bin())
            .args(["cluster", "show", "--admin", &admin])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.starts_with(&format!(
            "node n0 (connected), configuration revision {again}\n"
        )),
        "{shown}"
    );
    for name in ["n0", "n1", "n2"] {
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with(name) && l.contains(&again.to_string())),
            "{shown}"
        );
    }
    let names: Vec<String> = cluster_doc(admin0).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["n0", "n1", "n2"]);
    // One key signs x-amzn-oidc-data on every node (made once in etcd):
    // any node's /oidc/jwks verifies any node's logins.
    let admins: Vec<SocketAddr> = c.nodes.iter().map(|n| n.admin).collect();
    wait_for(
        Duration::from_secs(5),
        "the shared OIDC key on every node",
        || {
            let admins = admins.clone();
            async move {
                let mut seen = Vec::new();
                for a in admins {
                    seen.push(get(a, "/oidc/jwks").await.text());
                }
                seen[0].contains("\"kty\":\"EC\"") && seen.iter().all(|j| *j == seen[0])
            }
        },
    )
    .await;
    for n in &c.nodes {
        assert_eq!(n.metric("edgelb_cluster_connected").await, 1.0);
        assert_eq!(
            n.metric("edgelb_cluster_config_revision").await,
            again as f64
        );
        assert_eq!(n.status_json().await["cluster"]["revision"], again);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_etcd_leader_or_all_of_etcd_costs_no_client_request() {
    if !etcd_available() {
        return;
    }
    let a = TestTarget::start("a").await;
    let all: &[usize] = &[0, 1, 2];
    let mut c = Cluster::start(3, &[all, all]).await;
    // Pushed through the admin API itself.
    let (status, answer) = admin_call(
        c.nodes[1].admin,
        "PUT",
        "/cluster/config?name=shared.toml",
        &shared_config(c.port, &[a.addr], ""),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let revision = answer["revision"].as_i64().unwrap();
    for i in 0..2 {
        c.wait_revision(i, revision).await;
        c.wait_served(i).await;
    }
    let load = Load::start(c.front.clone());

    // The leader dies under traffic: propagation resumes after the election.
    let leader = c.etcd.leader().await;
    c.etcd.kill(leader);
    let x = format!("127.0.0.1:{}", free_port());
    let admin0 = c.nodes[0].admin;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = register(admin0, "spare", &x).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(Instant::now() < deadline, "no write after the election");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin1 = c.nodes[1].admin;
    let seen = x.clone();
    wait_for(
        Duration::from_secs(5),
        "the registration on the other node",
        || {
            let seen = seen.clone();
            async move { target_state(admin1, "spare", &seen).await.is_some() }
        },
    )
    .await;

    // All of etcd down: serving goes on; writes answer 503 and change nothing.
    for i in 0..3 {
        c.etcd.kill(i);
    }
    for n in &c.nodes {
        let admin = n.admin;
        wait_for(
            Duration::from_secs(10),
            "edgelb_cluster_connected 0",
            || async move {
                get(admin, "/metrics")
                    .await
                    .text()
                    .contains("edgelb_cluster_connected 0")
            },
        )
        .await;
    }
    let y = format!("127.0.0.1:{}", free_port());
    let (status, answer) = register(admin1, "spare", &y).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("cluster store unavailable"))
    );
    let (status, _) = admin_call(
        admin1,
        "DELETE",
        &format!("/target-groups/spare/targets/{x}"),
        "",
    )
    .await;
    assert_eq!(status, 503);
    let (status, _) = admin_call(
        admin1,
        "PUT",
        "/cluster/config",
        &shared_config(c.port, &[a.addr], ""),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(target_state(admin1, "spare", &y).await, None);
    assert!(target_state(admin1, "spare", &x).await.is_some());
    // Traffic went on through the election and the outage.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failures) = load.finish().await;
    assert!(ok > 100, "too little traffic to tell: {ok}");
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        ok,
        &failures[..failures.len().min(5)]
    );
    eprintln!("{ok} requests through the leader's loss and the outage, none failed");

    // A node restarted during the outage serves from its cache file.
    c.nodes[1].restart().await;
    c.wait_served(1).await;
    assert!(target_state(admin1, "spare", &x).await.is_some());
    assert_eq!(
        c.nodes[1].status_json().await["cluster"]["connected"],
        false
    );

    // etcd back: both nodes reconnect and take new changes again.
    for i in 0..3 {
        c.etcd.restart(i);
    }
    c.etcd.wait_writable().await;
    for n in &c.nodes {
        let admin = n.admin;
        wait_for(
            Duration::from_secs(15),
            "reconnected to etcd",
            || async move { cluster_doc(admin).await["connected"] == true },
        )
        .await;
    }
    let z = format!("127.0.0.1:{}", free_port());
    assert_eq!(register(admin0, "spare", &z).await.0, 200);
    wait_for(
        Duration::from_secs(5),
        "a registration after the outage",
        || {
            let z = z.clone();
            async move { target_state(admin1, "spare", &z).await.is_some() }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_etcd_catches_up_with_what_it_missed() {
    if !etcd_available() {
        return;
    }
    let a = TestTarget::start("a").await;
    // Node 0 knows members 0 and 1; node 1 only member 2, through a
    // forwarder the test can cut.
    let etcd = EtcdCluster::start(3).await;
    let proxy = TcpProxy::start(etcd.client_addr(2)).await;
    let endpoints = [
        etcd.endpoints_toml(&[0, 1]),
        format!("[\"http://{}\"]", proxy.addr),
    ];
    let mut c = Cluster::start_on(etcd, &endpoints).await;
    let revision = c.push(0, &shared_config(c.port, &[a.addr], "")).await;
    for i in 0..2 {
        c.wait_revision(i, revision).await;
        c.wait_served(i).await;
    }
    let cut = c.nodes[1].admin;
    let generation = c.nodes[1].generation().await;

    c.etcd.kill(2);
    c.etcd.wait_writable().await;
    wait_for(
        Duration::from_secs(10),
        "the cut-off node disconnected",
        || async move { cluster_doc(cut).await["connected"] == false },
    )
    .await;
    // Meanwhile, through node 0: a registration and a new configuration.
    let y = format!("127.0.0.1:{}", free_port());
    assert_eq!(register(c.nodes[0].admin, "spare", &y).await.0, 200);
    let v2 = c
        .push(
            0,
            &shared_config(c.port, &[a.addr], "slow_start = \"0s\"\n"),
        )
        .await;
    c.wait_revision(0, v2).await;
    // The cut-off node serves on, unchanged.
    c.wait_served(1).await;
    assert_eq!(target_state(cut, "spare", &y).await, None);
    assert_eq!(c.nodes[1].generation().await, generation);

    // Its member back: it catches up from the revision it had — the
    // registration and exactly one reload for the one new configuration.
    c.etcd.restart(2);
    c.wait_revision(1, v2).await;
    assert!(target_state(cut, "spare", &y).await.is_some());
    assert_eq!(c.nodes[1].generation().await, generation + 1);

    // Cut off again (etcd all up); meanwhile a registration, and etcd
    // compacts its history past what the node has seen: it reads
    // everything again, and applies the registration alone (the
    // configuration did not change).
    c.etcd.wait_writable().await;
    proxy.cut();
    wait_for(
        Duration::from_secs(10),
        "disconnected for the compaction",
        || async move { cluster_doc(cut).await["connected"] == false },
    )
    .await;
    let z = format!("127.0.0.1:{}", free_port());
    assert_eq!(register(c.nodes[0].admin, "spare", &z).await.0, 200);
    let compacted = c.etcd.compact(0).await;
    // Member 2 (the node's) has applied the compaction before the node may
    // come back.
    let old = format!(
        r#"{{"key":"Lw==","revision":"{}","serializable":true}}"#,
        compacted - 1
    );
    let etcd = &c.etcd;
    wait_for(Duration::from_secs(10), "member 2 compacted", || {
        let old = old.clone();
        async move {
            etcd.post(2, "/v3/kv/range", &old)
                .await
                .is_some_and(|v| v.to_string().contains("compacted"))
        }
    })
    .await;
    proxy.restore();
    let seen = z.clone();
    wait_for(
        Duration::from_secs(15),
        "the registration after the compaction",
        || {
            let seen = seen.clone();
            async move { target_state(cut, "spare", &seen).await.is_some() }
        },
    )
    .await;
    assert_eq!(c.nodes[1].generation().await, generation + 1);
    assert!(
        c.nodes[1].log().contains("compacted"),
        "{}",
        c.nodes[1].log()
    );

    // Lost and found again with nothing changed: nothing is applied again.
    c.etcd.kill(2);
    wait_for(
        Duration::from_secs(10),
        "disconnected again",
        || async move { cluster_doc(cut).await["connected"] == false },
    )
    .await;
    c.etcd.restart(2);
    wait_for(Duration::from_secs(15), "reconnected", || async move {
        cluster_doc(cut).await["connected"] == true
    })
    .await;
    assert_eq!(c.nodes[1].generation().await, generation + 1);
    c.wait_served(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_etcd_over_tls_with_its_client_certificate() {
    if !etcd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new();
    let ca_path = dir.path().join("ca.pem");
    ca.write_pem(&ca_path);
    let server = ca.issue(dir.path(), "etcd", &["127.0.0.1", "localhost"]);
    let client = ca.issue(dir.path(), "node", &["lb-1.internal"]);
    let etcd = EtcdCluster::start_tls(
        1,
        common::etcd::EtcdTls {
            cert: server.cert_path.clone(),
            key: server.key_path.clone(),
            ca: ca_path.clone(),
        },
    );
    let token = dir.path().join("admin.token");
    std::fs::write(&token, TOKEN).unwrap();
    let a = TestTarget::start("a").await;
    let tls = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        ca_path.display(),
        client.cert_path.display(),
        client.key_path.display()
    );
    let endpoints = etcd.endpoints_toml(&[0]);
    assert!(endpoints.contains("https://"), "{endpoints}");
    let node = Edgelb::start(&format!(
        "{}{tls}",
        node_config("n0", &endpoints, "127.0.0.2", &token)
    ))
    .await;
    let admin = node.admin;
    wait_for(
        Duration::from_secs(20),
        "a connection over TLS",
        || async move { cluster_doc(admin).await["connected"] == true },
    )
    .await;
    let port = free_port();
    let (status, answer) = admin_call(
        admin,
        "PUT",
        "/cluster/config",
        &shared_config(port, &[a.addr], ""),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let front: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    wait_for(
        Duration::from_secs(15),
        "served over the TLS-fed config",
        || async move { try_get(front, None).await.is_some_and(|(s, _, _)| s == 200) },
    )
    .await;

    // Without its client certificate, a node is refused by etcd.
    let refused = Edgelb::start(&format!(
        "{}ca_file = \"{}\"\n",
        node_config("n1", &endpoints, "127.0.0.3", &token),
        ca_path.display()
    ))
    .await;
    wait_for(
        Duration::from_secs(10),
        "the refused node's start",
        || async { refused.log().contains("no cached state") },
    )
    .await;
    assert_eq!(cluster_doc(refused.admin).await["connected"], false);
    assert_eq!(
        refused.status_json().await["listeners"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_resolves_the_dns_targets_of_the_pushed_configuration_itself() {
    if !etcd_available() {
        return;
    }
    // Two DNS servers that disagree: node n0 asks the first, n1 the second.
    let dns = [DnsServer::start(1).await, DnsServer::start(1).await];
    let port = free_port();
    let x: SocketAddr = format!("127.0.0.5:{port}").parse().unwrap();
    let y: SocketAddr = format!("127.0.0.6:{port}").parse().unwrap();
    let _tx = TestTarget::start_on(x, "x").await;
    let _ty = TestTarget::start_on(y, "y").await;
    dns[0].set_hosts("app.test", &["127.0.0.5"]);
    dns[1].set_hosts("app.test", &["127.0.0.6"]);
    let etcd = EtcdCluster::start(1).await;
    let endpoints = vec![etcd.endpoints_toml(&[0]); 2];
    let c = Cluster::start_with(etcd, &endpoints, |i| {
        format!("resolvers = [\"{}\"]", dns[i].addr)
    })
    .await;

    let shared = shared_config(c.port, &[], "").replacen(
        "targets = [  ]",
        &format!("targets = [ {{ dns = \"app.test\", port = {port} }} ]"),
        1,
    );
    let revision = c.push(0, &shared).await;
    for i in 0..2 {
        c.wait_revision(i, revision).await;
    }
    let serves = |i: usize, name: &'static str| {
        let addr = c.front[i];
        async move {
            wait_for(
                Duration::from_secs(15),
                "a node serving the target its DNS server names",
                || async move {
                    try_get(addr, None)
                        .await
                        .is_some_and(|(s, body, _)| s == 200 && body == name)
                },
            )
            .await
        }
    };
    serves(0, "x").await;
    serves(1, "y").await;
    // What a node resolved stays its own: nothing of it went to etcd.
    let origin = |status: &Value| status["target_groups"][0]["targets"].clone();
    let n0 = origin(&c.nodes[0].status_json().await);
    assert_eq!(n0.as_array().map(Vec::len), Some(1), "{n0}");
    assert_eq!(n0[0]["address"], x.to_string(), "{n0}");
    assert_eq!(n0[0]["origin"], "dns:app.test", "{n0}");
    let n1 = origin(&c.nodes[1].status_json().await);
    assert_eq!(n1.as_array().map(Vec::len), Some(1), "{n1}");
    assert_eq!(n1[0]["address"], y.to_string(), "{n1}");
    assert!(dns[0].queries("app.test") > 0 && dns[1].queries("app.test") > 0);

    // n0's records change: n0 follows by itself, n1 keeps its own answer.
    dns[0].set_hosts("app.test", &["127.0.0.6"]);
    serves(0, "y").await;
    let addr = c.front[0];
    wait_for(
        Duration::from_secs(15),
        "x drained from n0",
        || async move {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..4 {
                if let Some((200, body, _)) = try_get(addr, None).await {
                    seen.insert(body);
                }
            }
            seen.len() == 1 && seen.contains("y")
        },
    )
    .await;
    for _ in 0..4 {
        assert_eq!(
            try_get(c.front[1], None).await.map(|r| r.1),
            Some("y".to_owned())
        );
    }
}

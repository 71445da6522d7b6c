//! Cluster propagation (SPEC §11), for docs/performance.md: a real
//! three-member etcd and three edgelb nodes (the bench build) on loopback.
//!
//! - registration to applied on all three nodes, through the admin API of
//!   each node in turn: median and p99 of 200;
//! - 1,000 registrations through one node, one after another: the time until
//!   every node holds them, and each node's CPU;
//! - 10,000 registered targets written to etcd in transactions of 100: the
//!   time until every node holds them, and a node's resident memory.
//!
//!   cargo bench --bench cluster

#[path = "../tests/common/mod.rs"]
mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::etcd::EtcdCluster;
use common::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "cluster-bench-token-0123456789";

fn node_config(name: &str, endpoints: &str, ip: &str, token: &std::path::Path) -> String {
    format!(
        "[admin]\nbind = \"ADMIN\"\ntoken_file = \"{}\"\n\n[cluster]\netcd = {endpoints}\nprefix = \"/bench\"\nnode_name = \"{name}\"\nbind_ip = \"{ip}\"\n",
        token.display()
    )
}

const SHARED: &str = r#"[[listeners]]
name = "front"
protocol = "http"
bind = "127.0.0.1:PORT"
default_action = { forward = "web" }

[[target_groups]]
name = "web"
protocol = "http"
targets = [ { address = "127.0.0.1:9", weight = 1 } ]

[[target_groups]]
name = "spare"
protocol = "http"
targets = [ { address = "127.0.0.1:9", weight = 1 } ]
"#;

async fn call(admin: std::net::SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    admin_call(admin, TOKEN, method, path, body).await.0
}

/// How many targets node `admin` has in `spare`.
async fn spare_count(admin: std::net::SocketAddr) -> usize {
    let doc: serde_json::Value =
        serde_json::from_str(&get(admin, "/target-groups/spare/targets").await.text()).unwrap();
    doc["targets"].as_array().map_or(0, Vec::len)
}

/// user + system CPU seconds of process `pid`.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Each node's CPU seconds since `before`, as "1.23 s, …".
fn cpu_since(nodes: &[Edgelb], before: &[f64]) -> String {
    nodes
        .iter()
        .zip(before)
        .map(|(n, before)| format!("{:.2} s", cpu_seconds(n.pid()) - before))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until every node holds `count` targets in `spare`, asking each
/// every `every` (a bulk phase asks rarely: each answer lists every target).
async fn wait_all(nodes: &[Edgelb], count: usize, limit: Duration, every: Duration) -> Duration {
    let started = Instant::now();
    for n in nodes {
        while spare_count(n.admin).await < count {
            assert!(
                started.elapsed() < limit,
                "the nodes did not hold {count} targets"
            );
            tokio::time::sleep(every).await;
        }
    }
    started.elapsed()
}

const OFTEN: Duration = Duration::from_millis(1);
const RARELY: Duration = Duration::from_millis(250);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let etcd = EtcdCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, TOKEN).unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = node_config(
            &format!("n{i}"),
            &etcd.endpoints_toml(&etcd.all()),
            &format!("127.0.0.{}", i + 2),
            &token,
        );
        nodes.push(Edgelb::start(&config).await);
    }
    let shared = SHARED.replace("PORT", &free_port().to_string());
    assert_eq!(
        call(nodes[0].admin, "PUT", "/cluster/config", &shared).await,
        200
    );
    wait_all(&nodes, 1, Duration::from_secs(10), OFTEN).await;

    // Registration to applied on every node.
    let mut times = Vec::new();
    for k in 0..200 {
        let address = format!("127.0.1.1:{}", 10_000 + k);
        let started = Instant::now();
        let body = format!(r#"{{"address": "{address}"}}"#);
        assert_eq!(
            call(
                nodes[k % 3].admin,
                "POST",
                "/target-groups/spare/targets",
                &body
            )
            .await,
            200
        );
        wait_all(&nodes, k + 2, Duration::from_secs(10), OFTEN).await;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "registration to applied on 3 nodes (200): median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times[100].as_secs_f64() * 1e3,
        times[197].as_secs_f64() * 1e3,
        times[199].as_secs_f64() * 1e3
    );

    // 1,000 registrations through one node.
    let cpu_before: Vec<f64> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let started = Instant::now();
    for k in 0..1000 {
        let body = format!(r#"{{"address": "127.0.2.1:{}"}}"#, 10_000 + k);
        assert_eq!(
            call(
                nodes[0].admin,
                "POST",
                "/target-groups/spare/targets",
                &body
            )
            .await,
            200
        );
    }
    wait_all(&nodes, 1201, Duration::from_secs(120), RARELY).await;
    let took = started.elapsed();
    let cpu = cpu_since(&nodes, &cpu_before);
    println!(
        "1,000 registrations through one node: applied by all 3 in {:.2} s; CPU per node {}",
        took.as_secs_f64(),
        cpu
    );

    // 10,000 registered targets, written to etcd in transactions of 100.
    let rss_before = proc_status_kib(nodes[1].pid(), "VmRSS");
    let cpu_before: Vec<f64> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let started = Instant::now();
    for batch in 0..100 {
        let puts: Vec<String> = (0..100)
            .map(|i| {
                let key = format!("/bench/targets/spare/127.0.3.{}:{}", batch + 1, 10_000 + i);
                format!(
                    r#"{{"request_put": {{"key": "{}", "value": "{}"}}}}"#,
                    B64.encode(key),
                    B64.encode(r#"{"weight":1}"#)
                )
            })
            .collect();
        let txn = format!(r#"{{"success": [{}]}}"#, puts.join(","));
        let answer = etcd
            .post(0, "/v3/kv/txn", &txn)
            .await
            .expect("etcd answers");
        assert_eq!(answer["succeeded"], true, "{answer}");
    }
    wait_all(&nodes, 11_201, Duration::from_secs(300), RARELY).await;
    let took = started.elapsed();
    let rss_after = proc_status_kib(nodes[1].pid(), "VmRSS");
    let cpu = cpu_since(&nodes, &cpu_before);
    println!(
        "10,000 more targets written to etcd (100 txns of 100): held by all 3 nodes in {:.2} s; CPU per node {}; a node's RSS {} MiB -> {} MiB (11,201 registered targets)",
        took.as_secs_f64(),
        cpu,
        rss_before / 1024,
        rss_after / 1024,
    );
}

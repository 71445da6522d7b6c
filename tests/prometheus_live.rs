//! The Prometheus alert rules (`contrib/prometheus/edgelb-alerts.yml`)
//! against a real Prometheus server scraping a real edgelb every second:
//! alerts fire and clear, and stay silent for an unused group and a removed
//! target. Needs Debian's `prometheus`; CI runs it with `EDGELB_PROMETHEUS=1`
//! (without it the test says so and passes: it is CI's to run).

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping `admin` every second with the rules file, its
/// `for:` delays set to 0 (the delays are the operator's policy; the
/// expressions are what is tested).
fn start_prometheus(admin: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/prometheus/edgelb-alerts.yml"),
    )
    .unwrap();
    let rules: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                l.split("for:").next().unwrap().to_owned() + "for: 0s"
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: edgelb\n    static_configs: [{{ targets: [\"{admin}\"] }}]\n"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    Prometheus {
        child,
        addr,
        _dir: dir,
    }
}

/// Whether Prometheus answers and has scraped edgelb (`up` = 1) with its
/// health series.
async fn scraped_up(p: &Prometheus) -> bool {
    if tokio::net::TcpStream::connect(p.addr).await.is_err() {
        return false;
    }
    let got = get(
        p.addr,
        "/api/v1/query?query=edgelb_healthy_targets%20%3D%3D%202",
    )
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&got.body).unwrap_or_default();
    doc["data"]["result"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
}

/// The alerts Prometheus holds now: (alertname, target_group, target, state).
async fn alerts(p: &Prometheus) -> Vec<(String, String, String, String)> {
    let got = get(p.addr, "/api/v1/alerts").await;
    let doc: serde_json::Value = serde_json::from_slice(&got.body).unwrap_or_default();
    doc["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let l = &a["labels"];
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
            (
                s(&l["alertname"]),
                s(&l["target_group"]),
                s(&l["target"]),
                s(&a["state"]),
            )
        })
        .collect()
}

async fn wait_alerts(
    p: &Prometheus,
    what: &str,
    want: impl Fn(&[(String, String, String, String)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while tokio::time::Instant::now() < deadline {
        last = alerts(p).await;
        if want(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}: {last:?}");
}

fn firing(a: &[(String, String, String, String)], name: &str, target: &str) -> bool {
    a.iter()
        .any(|(n, _, t, s)| n == name && (target.is_empty() || t == target) && s == "firing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_and_clear_and_stay_silent_for_unused_groups_and_removed_targets() {
    if std::env::var_os("EDGELB_PROMETHEUS").is_none() {
        println!("EDGELB_PROMETHEUS is not set: the live Prometheus test runs in CI");
        return;
    }
    let t1 = TestTarget::start("one").await;
    let t2 = TestTarget::start("two").await;
    let listen = listen_addr();
    let checks = "\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npath = \"/health\"\n";
    let spare = format!(
        "\n[[target_groups]]\nname = \"spare\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n",
        dead_addr()
    );
    let both = one_group_config(
        listen,
        &[(t1.addr, 1), (t2.addr, 1)],
        &format!("deregistration_delay = \"1s\"{checks}"),
    ) + &spare;
    let lb = Edgelb::start(&both).await;
    let prometheus = start_prometheus(lb.admin);
    let (one, two) = (t1.addr.to_string(), t2.addr.to_string());

    // Everything in service: nothing fires, the unused group above all.
    wait_for(
        Duration::from_secs(30),
        "Prometheus to scrape edgelb",
        || async { scraped_up(&prometheus).await },
    )
    .await;
    wait_alerts(&prometheus, "a first evaluation with edgelb up", |a| {
        a.iter().all(|(_, _, _, s)| s != "firing")
    })
    .await;
    let up = get(
        prometheus.addr,
        "/api/v1/query?query=edgelb_healthy_targets",
    )
    .await;
    let up: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
    let groups: Vec<&str> = up["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["target_group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["web"], "only used groups have health series");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet = alerts(&prometheus).await;
    assert!(quiet.iter().all(|(_, _, _, s)| s != "firing"), "{quiet:?}");

    // A target goes out of service, and comes back.
    t2.set_health_status(500);
    wait_alerts(&prometheus, "two out of service", |a| {
        firing(a, "EdgelbTargetOutOfService", &two)
    })
    .await;
    t2.set_health_status(200);
    wait_alerts(&prometheus, "two back", |a| {
        !firing(a, "EdgelbTargetOutOfService", &two)
    })
    .await;

    // The whole group: the group alert, not one per target.
    t1.set_health_status(500);
    t2.set_health_status(500);
    wait_alerts(&prometheus, "web without a healthy target", |a| {
        firing(a, "EdgelbTargetGroupNoHealthyTarget", "")
    })
    .await;
    assert!(!firing(
        &alerts(&prometheus).await,
        "EdgelbTargetOutOfService",
        ""
    ));
    t1.set_health_status(200);
    wait_alerts(&prometheus, "web healthy again", |a| {
        !firing(a, "EdgelbTargetGroupNoHealthyTarget", "")
            && firing(a, "EdgelbTargetOutOfService", &two)
    })
    .await;

    // The out-of-service target is removed by a reload: its alert ends with its draining.
    let only_one = one_group_config(
        listen,
        &[(t1.addr, 1)],
        &format!("deregistration_delay = \"1s\"{checks}"),
    ) + &spare;
    lb.rewrite(&only_one);
    lb.signal("HUP");
    wait_alerts(&prometheus, "the removed target's alert to end", |a| {
        !firing(a, "EdgelbTargetOutOfService", &two)
    })
    .await;

    // A failed reload is a state until the next good one.
    lb.rewrite("this is = = not toml");
    lb.signal("HUP");
    wait_alerts(&prometheus, "the reload alert", |a| {
        firing(a, "EdgelbReloadFailed", "")
    })
    .await;
    lb.rewrite(&only_one);
    lb.signal("HUP");
    wait_alerts(&prometheus, "the reload alert to clear", |a| {
        !firing(a, "EdgelbReloadFailed", "")
    })
    .await;
    let end = alerts(&prometheus).await;
    assert!(
        end.iter()
            .all(|(_, g, t, s)| s != "firing" || (g != "spare" && *t != two)),
        "{end:?}"
    );
    let _ = one;
    println!("live Prometheus: alerts fired and cleared as expected");
}

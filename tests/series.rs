//! Metric series follow the configuration (SPEC §5): what a reload removes
//! leaves the scrape, unused groups have no health series, and reload state
//! is a gauge an alert can hold on to.

mod common;

use common::*;
use std::time::Duration;

fn two_listener_config(
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    t1: std::net::SocketAddr,
    t2: std::net::SocketAddr,
) -> String {
    format!(
        r#"[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "http"
bind = "{a}"
default_action = {{ forward = "web" }}

[[listeners]]
name = "side"
protocol = "http"
bind = "{b}"
default_action = {{ forward = "api" }}

[[target_groups]]
name = "web"
protocol = "http"
deregistration_delay = "1s"
targets = [ {{ address = "{t1}" }}, {{ address = "{t2}" }} ]

[[target_groups]]
name = "api"
protocol = "http"
targets = [ {{ address = "{t1}" }} ]

[[target_groups]]
name = "spare"
protocol = "http"
targets = [ {{ address = "{t2}" }} ]
"#
    )
}

async fn scrape(lb: &Edgelb) -> String {
    lb.admin_get("/metrics").await.1
}

fn lines_with<'a>(text: &'a str, parts: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_removed_objects_leave_and_unused_groups_have_no_health() {
    let t1 = TestTarget::start("one").await;
    let t2 = TestTarget::start("two").await;
    let (a, b) = (listen_addr(), listen_addr());
    let config = two_listener_config(a, b, t1.addr, t2.addr);
    let lb = Edgelb::start(&config).await;
    assert_eq!(get(a, "/").await.status, 200);
    assert_eq!(get(b, "/").await.status, 200);

    let m = scrape(&lb).await;
    // The unused group: no health gauges, not discovered.
    assert!(
        lines_with(&m, &["edgelb_healthy_targets", "\"spare\""]).is_empty(),
        "{m}"
    );
    assert_eq!(
        lines_with(&m, &["edgelb_healthy_targets", "\"web\""]).len(),
        1
    );
    let (_, discovery) = lb.admin_get("/zabbix/discovery").await;
    assert!(
        !discovery.contains("spare") && discovery.contains("web"),
        "{discovery}"
    );
    let (_, groups) = lb.admin_get("/zabbix/discovery/groups").await;
    let groups: serde_json::Value = serde_json::from_str(&groups).unwrap();
    let mut names: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["{#TG}"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["api", "web"]);
    assert!(
        m.contains("process_start_time_seconds"),
        "the process collector"
    );
    assert_eq!(lb.metric("edgelb_config_last_reload_successful").await, 1.0);
    let loaded = lb
        .metric("edgelb_config_last_reload_success_timestamp_seconds")
        .await;
    assert!(loaded > 1.7e9, "{loaded}");

    // A failed reload is a state, not an event.
    lb.rewrite("this is = = not toml");
    lb.signal("HUP");
    wait_for(Duration::from_secs(10), "the failed reload", || async {
        lb.metric("edgelb_config_last_reload_successful").await == 0.0
    })
    .await;

    // Remove listener "side", group "api" and target t2 of "web".
    let reduced = config
        .replace(
            &format!("[[listeners]]\nname = \"side\"\nprotocol = \"http\"\nbind = \"{b}\"\ndefault_action = {{ forward = \"api\" }}\n"),
            "",
        )
        .replace(
            &format!("[[target_groups]]\nname = \"api\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n", t1.addr),
            "",
        )
        .replace(&format!(", {{ address = \"{}\" }}", t2.addr), "");
    assert_ne!(reduced, config);
    lb.rewrite(&reduced);
    let before = lb.generation().await;
    lb.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload", || async {
        lb.generation().await > before
    })
    .await;
    assert_eq!(lb.metric("edgelb_config_last_reload_successful").await, 1.0);
    assert!(
        lb.metric("edgelb_config_last_reload_success_timestamp_seconds")
            .await
            >= loaded
    );
    let m = scrape(&lb).await;
    assert!(lines_with(&m, &["listener=\"side\""]).is_empty(), "{m}");
    assert!(lines_with(&m, &["target_group=\"api\""]).is_empty(), "{m}");
    assert!(!lines_with(&m, &["listener=\"front\""]).is_empty());
    // The removed target drains first (its series stay while it does) …
    let t2_up = |m: &str| {
        let t2 = t2.addr.to_string();
        lines_with(m, &["edgelb_target_up", "target_group=\"web\"", &t2]).len()
    };
    // … and leaves with its draining.
    wait_for(Duration::from_secs(10), "t2's series to go", || async {
        t2_up(&scrape(&lb).await) == 0
    })
    .await;
    let m = scrape(&lb).await;
    let t1 = t1.addr.to_string();
    assert_eq!(lines_with(&m, &["edgelb_target_up", &t1]).len(), 1);
    // The unused group's targets are `unused`, not out of service: no series.
    assert!(
        lines_with(&m, &["edgelb_target_up", "\"spare\""]).is_empty(),
        "{m}"
    );
}

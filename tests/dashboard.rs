//! The dashboard (SPEC §13): `GET /` serves one self-contained page, and its
//! script's logic (rates and p99 from `/metrics`) gives the right figures on
//! real scrapes of a running edgelb (run under node).

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_self_contained_and_its_figures_are_right() {
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(target.addr, 1)], "")).await;
    let page = get(lb.admin, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let html = page.text();
    assert!(
        html.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(external), "an external asset: {external}");
    }
    assert!(html.contains("fetch(\"/status\"") && html.contains("fetch(\"/metrics\""));
    assert!(
        html.contains("setInterval(refresh, 2000)"),
        "updated every 2 s"
    );

    // Two scrapes 2 s apart with 40 requests between them, read by the page's logic.
    let dir = tempfile::tempdir().unwrap();
    let older = dir.path().join("older.txt");
    std::fs::write(&older, lb.admin_get("/metrics").await.1).unwrap();
    let mut h1 = H1::connect(listen).await;
    for _ in 0..40 {
        assert_eq!(h1.get("/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let newer = dir.path().join("newer.txt");
    std::fs::write(&newer, lb.admin_get("/metrics").await.1).unwrap();
    let run = std::process::Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_logic.js"))
        .args([&older, &newer])
        .args(["2", "web"])
        .output();
    let Ok(out) = run else {
        // .ci/run installs Debian's nodejs; a machine without node skips this half.
        println!("node is not installed: the page's script is not run here");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["rps"], 20.0, "40 requests in 2 s: {got}");
    assert_eq!(got["errors"], 0.0);
    let p99 = got["p99"]
        .as_f64()
        .expect("a p99 from the response-time buckets");
    assert!(p99 > 0.0 && p99 <= 1.0, "{got}");
    assert_eq!(got["escaped"], "&lt;b x=&quot;1&quot;&gt;&amp;&lt;/b&gt;");
    assert_eq!(got["formatted"], "2.5 ms");
}

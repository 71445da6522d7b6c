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

/// A headless Chromium page on the admin API, driven through
/// tests/dashboard_browser.js (the DevTools protocol over a pipe).
struct Page {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Page {
    /// Opens `url` in a `width`×`height` phone viewport; `None` when this
    /// machine has no node or chromium and CI did not ask for them
    /// (`EDGELB_CHROMIUM=1`, set by .ci/run, which installs both).
    fn open(url: &str, width: u32, height: u32) -> Option<Page> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let required = std::env::var_os("EDGELB_CHROMIUM").is_some();
        let have = |bin: &str| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !(have("node") && have("chromium")) {
            assert!(
                !required,
                "EDGELB_CHROMIUM=1 but node or chromium is missing"
            );
            println!("node or chromium is not installed: the page is not opened here");
            return None;
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard_browser.js");
        let mut child = Command::new("node")
            .arg(script)
            .args([url, &width.to_string(), &height.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let input = child.stdin.take().unwrap();
        let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        output.read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "ready", "the browser did not start: {first}");
        Some(Page {
            child,
            input,
            output,
        })
    }

    /// The value of the JavaScript expression `js` in the page (promises
    /// awaited); a thrown exception is an `Err` with its description.
    fn eval(&mut self, js: &str) -> Result<serde_json::Value, String> {
        use std::io::{BufRead, Write};
        assert!(!js.contains('\n'), "one expression per line");
        tokio::task::block_in_place(|| {
            writeln!(self.input, "{js}").map_err(|e| e.to_string())?;
            let mut line = String::new();
            self.output
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let answer: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))?;
            match answer.get("error") {
                Some(e) => Err(e.to_string()),
                None => Ok(answer["value"].clone()),
            }
        })
    }

    /// Waits (10 s at most) until `js` is true in the page.
    async fn wait_true(&mut self, what: &str, js: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.eval(js);
            if got == Ok(serde_json::Value::Bool(true)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}: last {got:?}; page text: {:?}",
                self.eval("document.body.innerText")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The state the page shows for target `addr` (`null` when it shows none).
fn shown_state(addr: std::net::SocketAddr) -> String {
    format!(
        "([...document.querySelectorAll('#groups .target')].filter((t) => t.querySelector('.addr').textContent === '{addr}').map((t) => t.querySelector('.state').textContent)[0] ?? null)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_headless_chromium_the_page_follows_its_targets_in_place_on_a_phone() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let checks = "[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(a.addr, 1), (b.addr, 2)],
        checks,
    ))
    .await;
    let Some(mut page) = Page::open(&format!("http://{}/", lb.admin), 390, 844) else {
        return;
    };
    for t in [a.addr, b.addr] {
        page.wait_true(
            &format!("{t} healthy"),
            &format!("{} === 'healthy'", shown_state(t)),
        )
        .await;
    }
    assert_eq!(
        page.eval("document.querySelector('#groups .card h2').textContent"),
        Ok("web".into())
    );
    assert_eq!(
        page.eval("[...document.querySelectorAll('#groups .target')].map((t) => t.textContent.includes('weight 2')).join()"),
        Ok("false,true".into())
    );
    // Traffic shows in the group's request rate within a refresh or two.
    let mut h1 = H1::connect(listen).await;
    for _ in 0..50 {
        assert_eq!(h1.get("/").await.status, 200);
    }
    page.wait_true(
        "a request rate above zero",
        "!/^0(\\.0)? req\\/s/.test(document.querySelector('#groups .stats span').textContent)",
    )
    .await;

    // The page is updated in place: the same document, redrawn.
    page.eval("window.sameDocument = true").unwrap();
    b.stop().await;
    page.wait_true(
        "the stopped target unhealthy",
        &format!("{} === 'unhealthy'", shown_state(b.addr)),
    )
    .await;
    assert_eq!(page.eval("window.sameDocument === true"), Ok(true.into()));
    assert_eq!(
        page.eval(&shown_state(a.addr)),
        Ok("healthy".into()),
        "the other target stays healthy"
    );

    // Readable on a phone: nothing wider than the 390 px viewport.
    assert_eq!(page.eval("window.innerWidth"), Ok(390.into()));
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= window.innerWidth"),
        Ok(true.into()),
        "horizontal overflow at 390 px: {:?}",
        page.eval("document.documentElement.scrollWidth")
    );
}

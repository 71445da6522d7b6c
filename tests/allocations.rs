//! Heap allocations per proxied request, counted with a counting allocator on
//! edgelb's own thread (the test's client and target run on other threads and
//! are not counted). docs/performance.md quotes the figure; the budget below
//! keeps it from growing.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Allocations (and reallocations) per keep-alive HTTP/1.1 request forwarded
/// to a pooled target connection: on the fast path (`src/h1`); through hyper's
/// server (where a connection goes once a request needs it) with the request
/// sent on the fast path's raw target sockets (`proxy::raw`, what body-less
/// requests and HTTP/2 streams take); and through hyper's server and client
/// (a request whose `Connection` header names other headers). Measured: see
/// docs/performance.md.
const BUDGET_FAST: f64 = ALLOCS_MEASURED_FAST + 0.5;
const ALLOCS_MEASURED_FAST: f64 = 0.0;
const BUDGET_HYPER_RAW: f64 = ALLOCS_MEASURED_HYPER_RAW + 0.5;
const ALLOCS_MEASURED_HYPER_RAW: f64 = 10.0;
const BUDGET_HYPER: f64 = ALLOCS_MEASURED_HYPER + 0.5;
/// 11 for a plain request before session 6; these requests name a header in
/// `Connection`, which costs two more (the list of names, the custom name);
/// since session 14 one more: hyper's client exchange is boxed, which takes
/// 1.7 KB off the future of every request (docs/performance.md).
const ALLOCS_MEASURED_HYPER: f64 = 14.0;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_per_proxied_request_stay_within_budget() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgelb.toml");
    let config = one_group_config(
        listen,
        &[(t.addr, 1)],
        "[target_groups.health_check]\ninterval = \"60s\"\n",
    )
    .replace("ADMIN", &format!("127.0.0.1:{}", free_port()))
    .replace("[global]\n", "[global]\nworker_threads = 1\n");
    std::fs::write(&path, config).unwrap();
    let loaded = edgelb::config::load(&path).unwrap();
    // edgelb on a thread of its own, every allocation there counted.
    std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(edgelb::daemon::serve(
            &path,
            loaded,
            edgelb::daemon::AdminBind::Now,
            None,
        ));
    });
    wait_for(Duration::from_secs(10), "edgelb to listen", || {
        let ok = std::net::TcpStream::connect(listen).is_ok();
        async move { ok }
    })
    .await;
    // A request naming another header in `Connection` is hyper's, server and
    // client; the connection stays with hyper's server after it (until it
    // idles for a second and is parked, so each kind is measured right after
    // its connection's first request).
    let unusual = || {
        http::Request::get("/")
            .header("host", "test.local")
            .header("connection", "keep-alive, x-hop")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    // With the fast path off (`[global] http1_fast_path = false`), hyper's
    // server and client serve every kind: only their budget applies.
    let fast_path = common::fast_path_on();
    let kinds = [
        ("hyper's server, raw target sockets", BUDGET_HYPER_RAW),
        ("hyper's server and client", BUDGET_HYPER),
        ("fast path", BUDGET_FAST),
    ];
    for (what, budget) in kinds
        .into_iter()
        .filter(|(what, _)| fast_path || *what == "hyper's server and client")
    {
        let mut h1 = H1::connect(listen).await;
        let all_unusual = what == "hyper's server and client";
        if what != "fast path" {
            assert_eq!(h1.send(unusual()).await.unwrap().text(), "t");
        }
        let one = async |h1: &mut H1| {
            let got = if all_unusual {
                h1.send(unusual()).await.unwrap()
            } else {
                h1.get("/").await
            };
            assert_eq!(got.text(), "t");
        };
        for _ in 0..2000 {
            one(&mut h1).await;
        }
        const N: u64 = 10_000;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..N {
            one(&mut h1).await;
        }
        let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
        println!("allocations per proxied HTTP/1.1 request, {what}: {per_request:.2}");
        assert!(
            per_request <= budget,
            "{what}: {per_request:.2} allocations per request, over the budget of {budget}"
        );
    }
}

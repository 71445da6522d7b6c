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
/// to a pooled target connection, on the fast path (`src/h1`) and on hyper's
/// path (where a connection goes once a request needs it). Measured: see
/// docs/performance.md.
const BUDGET_FAST: f64 = ALLOCS_MEASURED_FAST + 0.5;
const ALLOCS_MEASURED_FAST: f64 = 0.0;
const BUDGET_HYPER: f64 = ALLOCS_MEASURED_HYPER + 0.5;
const ALLOCS_MEASURED_HYPER: f64 = 11.0;

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
        runtime.block_on(edgelb::daemon::serve(&path, loaded, None));
    });
    wait_for(Duration::from_secs(10), "edgelb to listen", || {
        let ok = std::net::TcpStream::connect(listen).is_ok();
        async move { ok }
    })
    .await;
    let fast = H1::connect(listen).await;
    // A request naming a hop-by-hop header in `Connection` is hyper's: this
    // connection stays on hyper's path from then on.
    let mut hyper_path = H1::connect(listen).await;
    let unusual = http::Request::get("/")
        .header("host", "test.local")
        .header("connection", "keep-alive, x-hop")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(hyper_path.send(unusual).await.unwrap().text(), "t");
    for (what, mut h1, budget) in [
        ("fast path", fast, BUDGET_FAST),
        ("hyper's path", hyper_path, BUDGET_HYPER),
    ] {
        for _ in 0..2000 {
            assert_eq!(h1.get("/").await.text(), "t");
        }
        const N: u64 = 10_000;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..N {
            h1.get("/").await;
        }
        let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
        println!("allocations per proxied HTTP/1.1 request, {what}: {per_request:.2}");
        assert!(
            per_request <= budget,
            "{what}: {per_request:.2} allocations per request, over the budget of {budget}"
        );
    }
}

//! `edgelb demo`: three demo targets on loopback (weights 1, 2, 3), a listener
//! in front of them, the admin API, and what to try.

use super::run::{EXIT_CONFIG, EXIT_RUNTIME, init_logging, serve, tokio_runtime};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// The demo targets' weights.
const WEIGHTS: [u32; 3] = [1, 2, 3];

/// One demo target: answers every path with its name; `GET /health` says 200
/// or 503, switched by `POST /health/toggle`.
struct DemoTarget {
    number: usize,
    weight: u32,
    healthy: AtomicBool,
}

impl DemoTarget {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, text) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/health") if self.healthy.load(Ordering::Relaxed) => {
                (StatusCode::OK, "ok\n".to_owned())
            }
            (&Method::GET, "/health") => {
                (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_owned())
            }
            (&Method::POST, "/health/toggle") => {
                let now = !self.healthy.fetch_xor(true, Ordering::Relaxed);
                (
                    StatusCode::OK,
                    format!("health endpoint now {}\n", if now { "200" } else { "503" }),
                )
            }
            _ => (
                StatusCode::OK,
                format!("demo target {} (weight {})\n", self.number, self.weight),
            ),
        };
        let mut resp = Response::new(Full::new(Bytes::from(text)));
        *resp.status_mut() = status;
        resp
    }
}

async fn start_target(number: usize, weight: u32) -> std::io::Result<SocketAddr> {
    let socket = TcpListener::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    let target = Arc::new(DemoTarget {
        number,
        weight,
        healthy: AtomicBool::new(true),
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let resp = target.answer(&req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn demo_config(listen: SocketAddr, admin: SocketAddr, targets: &[SocketAddr]) -> String {
    let mut targets_toml = String::new();
    for (addr, weight) in targets.iter().zip(WEIGHTS) {
        targets_toml.push_str(&format!(
            "  {{ address = \"{addr}\", weight = {weight} }},\n"
        ));
    }
    format!(
        r#"# Written by `edgelb demo`.
[global]
drain_timeout = "5s"

[admin]
bind = "{admin}"

[[listeners]]
name = "demo"
protocol = "http"
bind = "{listen}"
default_action = {{ forward = "demo" }}

[[target_groups]]
name = "demo"
protocol = "http"
targets = [
{targets_toml}]

[target_groups.health_check]
path = "/health"
interval = "2s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2
"#
    )
}

/// Runs the demo until Ctrl-C.
pub fn demo(listen: SocketAddr, admin: SocketAddr) -> u8 {
    init_logging();
    let runtime = match tokio_runtime(2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(async move {
        let mut targets = Vec::new();
        for (i, w) in WEIGHTS.iter().enumerate() {
            match start_target(i + 1, *w).await {
                Ok(a) => targets.push(a),
                Err(e) => {
                    eprintln!("cannot start demo target {}: {e}", i + 1);
                    return EXIT_RUNTIME;
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("edgelb-demo-{}", std::process::id()));
        let path = dir.join("edgelb.toml");
        let text = demo_config(listen, admin, &targets);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &text)) {
            eprintln!("cannot write {}: {e}", path.display());
            return EXIT_RUNTIME;
        }
        let loaded = match crate::config::parse(&text, &path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_CONFIG;
            }
        };
        let t3 = targets[2];
        let banner = format!(
            "\nedgelb demo is running.\n\
             \n  listener      http://{listen}/   → targets {}, {}, {} (weights 1, 2, 3)\n  admin API     http://{admin}/\n  its config    {}\n\
             \nTry:\n  for i in $(seq 6); do curl -s http://{listen}/; done     # smooth weighted round robin: 3,2,1,3,2,3\n\
             \x20 curl -s http://{admin}/status                          # listeners, targets, generation\n\
             \x20 curl -s http://{admin}/metrics | grep edgelb_requests   # Prometheus metrics\n\
             \x20 curl -s -X POST http://{t3}/health/toggle              # flip target 3's health endpoint: it leaves within ~4 s\n\
             \x20 curl -s http://{admin}/target-groups/demo/targets      # …and comes back by itself after a second toggle\n\
             \x20 edit the config, then: kill -HUP {}                     # reload without a restart\n\
             \nCtrl-C stops it.\n",
            targets[0], targets[1], targets[2], path.display(), std::process::id()
        );
        serve(&path, loaded, super::run::AdminBind::Now, Some(Box::new(move || println!("{banner}")))).await
    })
}

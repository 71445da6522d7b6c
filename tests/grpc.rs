//! gRPC through edgelb between real gRPC peers: the reference implementation
//! (grpcio, from PyPI) as client and server (tests/grpc_peer.py), through an
//! `http` listener to a `grpc` group. Unary and the three streaming kinds,
//! metadata and trailers, a status with details passed through, a target
//! killed mid-stream (the client gets an error, nothing hangs), and
//! edgelb's own UNAVAILABLE after it.
//!
//! grpcio rather than tonic: the reference implementation is what most
//! clients run, and it costs the build nothing (tonic and prost would add
//! minutes on two cores). `.ci/run` installs it with pip and sets
//! `EDGELB_GRPC=1`, which makes its absence a failure; elsewhere the test
//! is skipped without it.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn peer_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_peer.py")
}

/// Whether python3 can import grpc (else the test is skipped, unless CI
/// asked for it).
fn grpcio_present() -> bool {
    let have = Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have || std::env::var_os("EDGELB_GRPC").is_none(),
        "EDGELB_GRPC=1 but python3 cannot import grpc (pip install grpcio)"
    );
    have
}

/// Kills the peer when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_grpc_calls_of_every_kind_pass_through_and_a_killed_target_ends_its_stream() {
    if !grpcio_present() {
        println!("grpcio is not installed: the gRPC peers are not run here");
        return;
    }
    let mut server = Peer(
        Command::new("python3")
            .arg(peer_script())
            .arg("server")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts"),
    );
    let mut port = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(target, 1)],
        // The peer has no grpc.health.v1 service: a TCP check.
        "protocol_version = \"grpc\"\n[target_groups.health_check]\nprotocol = \"tcp\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\n",
    ))
    .await;
    wait_for(
        Duration::from_secs(10),
        "the gRPC server healthy",
        || async {
            lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
                .await
                == 1.0
        },
    )
    .await;

    let results = tokio::task::block_in_place(|| {
        let mut client = Peer(
            Command::new("python3")
                .arg(peer_script())
                .args(["client", &listen.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 starts"),
        );
        let mut results = std::collections::HashMap::new();
        for line in BufReader::new(client.0.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if line == "streaming" {
                // The stream flows: the target dies under it.
                let _ = server.0.kill();
                let _ = server.0.wait();
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            results.insert(v["call"].as_str().unwrap().to_owned(), v);
        }
        assert!(client.0.wait().unwrap().success(), "the gRPC client failed");
        results
    });
    let r = |name: &str| {
        results
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {results:?}"))
    };
    assert_eq!(r("unary")["reply"], "hello");
    assert_eq!(r("unary")["code"], 0);
    assert_eq!(r("unary")["initial"], "m1", "metadata both ways");
    assert_eq!(r("unary")["trailing"], "yes", "trailing metadata");
    assert_eq!(
        r("unary_error")["code"],
        3,
        "INVALID_ARGUMENT passed through"
    );
    assert_eq!(r("unary_error")["details"], "bad input");
    assert_eq!(
        r("server_stream")["replies"],
        serde_json::json!(["s", "s", "s", "s", "s"])
    );
    assert_eq!(r("client_stream")["reply"], "abc");
    assert_eq!(r("bidi")["replies"], serde_json::json!(["x", "y", "z"]));
    assert_eq!(
        r("unknown_method")["code"],
        12,
        "UNIMPLEMENTED from the target"
    );
    let killed = r("killed_stream");
    assert_ne!(
        killed["code"], 0,
        "a stream cut by a dying target ends in an error: {killed}"
    );
    assert!(killed["messages"].as_u64().unwrap() >= 3, "{killed}");
    assert!(
        killed["seconds"].as_f64().unwrap() < 10.0,
        "it ended, not hung: {killed}"
    );
    assert_eq!(r("after_kill")["code"], 14, "UNAVAILABLE from edgelb");

    // Four calls ended OK; the stream cut off has no status to count.
    for (code, count) in [("0", 4.0), ("3", 1.0), ("12", 1.0), ("14", 1.0)] {
        let series = format!(
            "edgelb_grpc_responses_total{{code=\"{code}\",listener=\"front\",target_group=\"web\"}}"
        );
        assert_eq!(lb.metric(&series).await, count, "{series}");
    }
}

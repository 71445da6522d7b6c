//! A minimal gRPC unary server for `benches/load.sh`'s gRPC row: every call
//! (any method) is answered with its request message echoed, `grpc-status:
//! 0` in the trailers. Built on the `h2` crate, one thread, so that the
//! target costs little beside the balancers measured (a Python or Go gRPC
//! server would be the bottleneck of the row).
//!
//!   cargo bench --bench grpc_target -- PORT

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .filter(|a| a != "--bench")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: grpc_target PORT");
    let socket = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    while let Ok((stream, _)) = socket.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::Builder::new()
                .max_concurrent_streams(1000)
                .handshake::<_, Bytes>(stream)
                .await
            else {
                return;
            };
            while let Some(Ok((req, respond))) = conn.accept().await {
                tokio::spawn(unary(req.into_body(), respond));
            }
        });
    }
}

/// Reads the request message and answers it back with status 0.
async fn unary(mut body: h2::RecvStream, mut respond: h2::server::SendResponse<Bytes>) {
    let mut message = Vec::new();
    while let Some(Ok(data)) = body.data().await {
        let _ = body.flow_control().release_capacity(data.len());
        message.extend_from_slice(&data);
    }
    let head = Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .expect("a valid head");
    let Ok(mut stream) = respond.send_response(head, false) else {
        return;
    };
    let _ = stream.send_data(Bytes::from(message), false);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = stream.send_trailers(trailers);
}

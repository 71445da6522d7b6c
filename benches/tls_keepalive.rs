//! A load generator for HTTP/1.1 keep-alive requests over TLS, with or without
//! a client certificate: `benches/load.sh`'s mutual-TLS rows (wrk and h2load
//! cannot present a client certificate). One thread, like `wrk -t1`; each
//! connection sends `GET /` and reads the whole response before the next.
//!
//!   cargo bench --bench tls_keepalive -- HOST:PORT SECONDS CONNECTIONS [CERT.pem KEY.pem]
//!
//! Prints the requests per second. The server's certificate is not verified
//! (loopback benchmarks with throw-away certificates).

use edgelb::tls::client::NoVerification;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends requests on one connection until `until`, counting responses.
async fn connection(
    config: Arc<rustls::ClientConfig>,
    addr: String,
    until: Instant,
    done: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < until {
        tls.write_all(request).await?;
        let mut have = 0;
        loop {
            let n = tls.read(&mut buf[have..]).await?;
            if n == 0 {
                return Ok(());
            }
            have += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf[..have]) {
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                if have >= head + len {
                    break;
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 3 {
        // `cargo bench` runs every bench without arguments: nothing to measure.
        eprintln!("usage: tls_keepalive HOST:PORT SECONDS CONNECTIONS [CERT.pem KEY.pem]");
        return;
    }
    let addr = args[0].clone();
    let seconds: u64 = args[1].parse().expect("SECONDS");
    let conns: usize = args[2].parse().expect("CONNECTIONS");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)));
    let mut config = match (args.get(3), args.get(4)) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .expect("the client certificate")
                .collect::<Result<_, _>>()
                .expect("PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("the client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("a certificate and its key")
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                tokio::spawn(connection(
                    config.clone(),
                    addr.clone(),
                    until,
                    done.clone(),
                ))
            })
            .collect();
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                eprintln!("a connection failed: {e}");
            }
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.1}");
}

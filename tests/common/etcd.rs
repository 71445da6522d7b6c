//! A real etcd cluster on loopback (Debian's `etcd-server`), started by a
//! test: members on ephemeral ports with short election timeouts, killed
//! and restarted from their data directories as the test says.

use super::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// The cluster; its members are killed when it is dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    initial: String,
    tls: Option<EtcdTls>,
}

/// TLS on the members' client port, with client certificates required.
pub struct EtcdTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The CA clients' certificates must chain to.
    pub ca: std::path::PathBuf,
}

/// Whether the `etcd` binary is on this machine.
pub fn have_etcd() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster takes writes.
    pub async fn start(n: usize) -> EtcdCluster {
        let cluster = Self::spawn_all(n, None);
        cluster.wait_writable().await;
        cluster
    }

    /// Starts `n` members speaking TLS to clients (the test waits for them
    /// through its own TLS client: edgelb).
    pub fn start_tls(n: usize, tls: EtcdTls) -> EtcdCluster {
        Self::spawn_all(n, Some(tls))
    }

    fn spawn_all(n: usize, tls: Option<EtcdTls>) -> EtcdCluster {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            dir: tempfile::tempdir().unwrap(),
            initial,
            tls,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-token", "edgelb-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    /// `["http://127.0.0.1:P", …]` of the members `which`, for `[cluster] etcd`.
    pub fn endpoints_toml(&self, which: &[usize]) -> String {
        let list: Vec<String> = which
            .iter()
            .map(|&i| {
                format!(
                    "\"{}://127.0.0.1:{}\"",
                    self.scheme(),
                    self.members[i].client_port
                )
            })
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// Member `i`'s client address (plain HTTP).
    pub fn client_addr(&self, i: usize) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.members[i].client_port)
            .parse()
            .unwrap()
    }

    /// Every member's endpoints.
    pub fn all(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    /// Posts to the JSON gateway of member `i`.
    pub async fn post(&self, i: usize, path: &str, body: &str) -> Option<serde_json::Value> {
        let url = format!("127.0.0.1:{}", self.members[i].client_port);
        let text = super::http_post(&url, path, body).await?;
        serde_json::from_str(&text).ok()
    }

    /// The index of the current leader.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    continue;
                }
                if let Some(v) = self.post(i, "/v3/maintenance/status", "{}").await
                    && v["leader"].is_string()
                    && v["leader"] == v["header"]["member_id"]
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a write through some running member succeeds.
    pub async fn wait_writable(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    continue;
                }
                let put = r#"{"key":"L19wcm9iZQ==","value":"MQ=="}"#;
                if let Some(v) = self.post(i, "/v3/kv/put", put).await
                    && v.get("error").is_none()
                    && v["header"]["revision"].is_string()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become writable:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Compacts the store through member `i` at its current revision:
    /// older revisions can no longer be watched from.
    pub async fn compact(&self, i: usize) -> i64 {
        let v = self
            .post(i, "/v3/kv/range", r#"{"key":"Lw=="}"#)
            .await
            .expect("etcd answers");
        let revision: i64 = v["header"]["revision"].as_str().unwrap().parse().unwrap();
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        let v = self
            .post(i, "/v3/kv/compaction", &body)
            .await
            .expect("etcd answers");
        assert!(v.get("error").is_none(), "{v}");
        revision
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again from its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

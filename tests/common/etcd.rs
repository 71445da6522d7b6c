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
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_writable().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
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
            .map(|&i| format!("\"http://127.0.0.1:{}\"", self.members[i].client_port))
            .collect();
        format!("[{}]", list.join(", "))
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

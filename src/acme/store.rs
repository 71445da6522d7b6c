//! Where the account and the certificates are kept between runs: files in
//! `[acme] storage`, readable by edgelb's user only.

use instant_acme::AccountCredentials;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A certificate as issued: its chain and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// The storage directory.
pub struct Store {
    dir: PathBuf,
}

/// The file name of the certificate for `names`: the first name and a hash
/// of them all (two entries may share a first name).
pub fn certificate_id(names: &[String]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, names.join(",").as_bytes());
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hash}", names.first().map_or("none", String::as_str))
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The account's credentials, if one was made.
    pub fn account(&self) -> Result<Option<AccountCredentials>, String> {
        match read(&self.dir.join("account.json"))? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.dir.join("account.json").display())),
        }
    }

    pub fn save_account(&self, credentials: &AccountCredentials) -> Result<(), String> {
        let text = serde_json::to_string(credentials).map_err(|e| e.to_string())?;
        self.write("account.json", &text)
    }

    /// The certificate stored for `names`.
    pub fn certificate(&self, names: &[String]) -> Result<Option<Issued>, String> {
        let id = certificate_id(names);
        let chain = read(&self.dir.join(format!("{id}.pem")))?;
        let key = read(&self.dir.join(format!("{id}.key")))?;
        Ok(match (chain, key) {
            (Some(chain_pem), Some(key_pem)) => Some(Issued { chain_pem, key_pem }),
            _ => None,
        })
    }

    /// Stores a new certificate (key first: a chain is only ever beside its key).
    pub fn save_certificate(&self, names: &[String], issued: &Issued) -> Result<(), String> {
        let id = certificate_id(names);
        self.write(&format!("{id}.key"), &issued.key_pem)?;
        self.write(&format!("{id}.pem"), &issued.chain_pem)
    }

    /// Writes `name` atomically with mode 0600 (the directory 0700).
    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.dir.join(name);
        crate::files::write_private(&path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

fn read(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_round_trip_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("acme"));
        let names = vec!["a.example.com".to_owned(), "b.example.com".to_owned()];
        assert_eq!(store.certificate(&names).unwrap(), None);
        let issued = Issued {
            chain_pem: "chain".into(),
            key_pem: "key".into(),
        };
        store.save_certificate(&names, &issued).unwrap();
        assert_eq!(store.certificate(&names).unwrap(), Some(issued));
        use std::os::unix::fs::PermissionsExt;
        let id = certificate_id(&names);
        for f in [format!("{id}.pem"), format!("{id}.key")] {
            let mode = std::fs::metadata(dir.path().join("acme").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        assert_ne!(certificate_id(&names), certificate_id(&names[..1]));
    }
}

//! The ACME account: made once (agreeing to the terms), kept by the caller
//! (files, or etcd in a cluster), and restored from its credentials at every
//! start (no new account, no new key).

use crate::config::Acme;
use instant_acme::{Account, AccountBuilder, AccountCredentials, NewAccount};

/// An HTTP client for the ACME server, trusting `ca_file` or the system roots.
fn builder(config: &Acme) -> Result<AccountBuilder, String> {
    match &config.ca_file {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    }
    .map_err(|e| format!("ACME client: {e}"))
}

/// The account of `stored` credentials, or a new one: then its credentials
/// are returned too, for the caller to keep.
pub async fn account(
    config: &Acme,
    stored: Option<AccountCredentials>,
) -> Result<(Account, Option<AccountCredentials>), String> {
    if let Some(credentials) = stored {
        let account = builder(config)?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("ACME account from {}: {e}", config.directory))?;
        return Ok((account, None));
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(config)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new ACME account at {}: {e}", config.directory))?;
    tracing::info!(directory = %config.directory, "ACME account created");
    Ok((account, Some(credentials)))
}

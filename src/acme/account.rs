//! The ACME account: made once (agreeing to the terms), kept in the store,
//! and restored from it at every start (no new account, no new key).

use super::store::Store;
use crate::config::Acme;
use instant_acme::{Account, AccountBuilder, NewAccount};

/// An HTTP client for the ACME server, trusting `ca_file` or the system roots.
fn builder(config: &Acme) -> Result<AccountBuilder, String> {
    match &config.ca_file {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    }
    .map_err(|e| format!("ACME client: {e}"))
}

/// The stored account, or a new one (then stored).
pub async fn account(config: &Acme, store: &Store) -> Result<Account, String> {
    if let Some(credentials) = store.account()? {
        return builder(config)?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("ACME account from {}: {e}", config.directory));
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
    store.save_account(&credentials)?;
    tracing::info!(directory = %config.directory, "ACME account created");
    Ok(account)
}

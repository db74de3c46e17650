//! Connecting to NATS as configured: credentials in `NATS_URL`, a `.creds` file, TLS.
//!
//! async-nats reads no credentials from a server URL, so they are taken out of `NATS_URL` here
//! and given to the client as user and password (`nats://user:pass@host`) or token
//! (`nats://token@host`). `tls://` needs nothing more: the client then insists on TLS.

use std::path::Path;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use crate::config::urls::{redacted, Auth, NatsUrl};

/// Connects to `NATS_URL` with `options` plus the configured credentials.
pub async fn connect(
    raw_url: &str,
    creds_file: Option<&Path>,
    options: ConnectOptions,
) -> Result<Client, String> {
    let url: NatsUrl = raw_url.parse()?;
    let mut options = options.connection_timeout(Duration::from_secs(2));
    options = match url.auth {
        Auth::None => options,
        Auth::UserPassword(user, password) => options.user_and_password(user, password),
        Auth::Token(token) => options.token(token),
    };
    if let Some(path) = creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("reading NATS_CREDS_FILE {}: {e}", path.display()))?;
    }
    options
        .connect(url.servers)
        .await
        .map_err(|e| format!("connecting to {}: {e}", redacted(raw_url)))
}

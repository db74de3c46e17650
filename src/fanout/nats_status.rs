//! The server's own NATS connection, kept open so `/readyz` reports what the client sees.
//!
//! A TCP probe says `up` for anything that accepts a connection (a cut proxy, a port that is
//! not NATS); the client's state is `Connected` only after the server's INFO and our CONNECT
//! went through, and it leaves that state when the socket closes or pings go unanswered.

use std::sync::OnceLock;
use std::time::Duration;

use async_nats::connection::State;

/// Two unanswered pings drop the connection, so a silent peer reads `down` within three of
/// these, inside the 10 s that API.md allows.
const PING_INTERVAL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect attempts are at most this far apart, so a returning server reads `up` soon.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct NatsStatus {
    client: OnceLock<async_nats::Client>,
}

impl NatsStatus {
    /// Starts connecting in the background and returns at once: NATS being down or slow never
    /// holds up the server's start.
    pub async fn connect(&self, url: &str, creds_file: Option<&std::path::Path>) {
        let options = async_nats::ConnectOptions::new()
            .name("chronicle readiness")
            .retry_on_initial_connect()
            .connection_timeout(CONNECT_TIMEOUT)
            .ping_interval(PING_INTERVAL)
            .reconnect_delay_callback(|attempts| {
                let millis = 100u64.saturating_mul(1 << attempts.min(8));
                Duration::from_millis(millis).min(MAX_RECONNECT_DELAY)
            });
        // The same credentials and TLS as the relay's connection, or readiness would report a
        // NATS that requires them as down.
        let connecting = crate::fanout::nats::connect(url, creds_file, options).await;
        match connecting {
            Ok(client) => {
                let _ = self.client.set(client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "NATS_URL cannot be used; readiness reports NATS down")
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|client| client.connection_state() == State::Connected)
    }
}

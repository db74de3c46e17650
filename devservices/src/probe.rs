//! Is a service answering at a URL, and is it the kind Chronicle needs?

use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::endpoint::Endpoint;

/// What a Postgres server at a URL says to the URL's login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgProbe {
    /// A server accepted the login (to its `postgres` database).
    Accepting,
    /// A server is there but refuses these credentials; the server's words.
    LoginRejected(String),
    /// A server is there but not accepting connections yet (starting, shutting down).
    NotReady,
    /// No Postgres answers there.
    Absent,
}

/// Logs in to the `postgres` database with the URL's credentials: the app creates its own
/// database, so a missing one says nothing about the server. Only a clear refusal of the
/// credentials counts against it; other errors are the app's to report.
pub async fn probe_postgres(url: &str) -> PgProbe {
    let Ok(endpoint) = Endpoint::parse(url, 5432) else {
        return PgProbe::Absent;
    };
    let maintenance = endpoint.with_database("postgres");
    let Ok(options) = PgConnectOptions::from_str(&maintenance) else {
        return PgProbe::Absent;
    };
    let options = options.disable_statement_logging();
    let attempt = tokio::time::timeout(Duration::from_secs(5), options.connect()).await;
    match attempt {
        Err(_elapsed) => PgProbe::Absent,
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            PgProbe::Accepting
        }
        Ok(Err(sqlx::Error::Database(e))) => match e.code().as_deref() {
            // invalid_authorization_specification (pg_hba, unknown role), invalid_password
            Some("28000" | "28P01") => PgProbe::LoginRejected(e.message().to_owned()),
            // cannot_connect_now: starting up or shutting down
            Some("57P03") => PgProbe::NotReady,
            _ => PgProbe::Accepting,
        },
        // The server wanted a password the URL does not carry.
        Ok(Err(e)) if e.to_string().contains("password") => PgProbe::LoginRejected(e.to_string()),
        Ok(Err(_)) => PgProbe::Absent,
    }
}

/// [`probe_postgres`], looking again for up to ten seconds while a server is still starting.
pub async fn probe_postgres_settled(url: &str) -> PgProbe {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = probe_postgres(url).await;
        if probe != PgProbe::NotReady || tokio::time::Instant::now() >= deadline {
            return probe;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `INFO` line a NATS server greets every client with, or `None` when what answers at
/// `host`:`port` (if anything) is not NATS.
pub fn nats_info(host: &str, port: u16) -> Option<String> {
    let addrs = (host, port).to_socket_addrs().ok()?;
    for addr in addrs {
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut line = String::new();
        let read = BufReader::new(&stream).read_line(&mut line);
        if read.is_ok() && line.starts_with("INFO ") {
            return Some(line.trim_end().to_owned());
        }
    }
    None
}

/// Does the server's greeting advertise JetStream?
pub fn has_jetstream(info: &str) -> bool {
    info.contains("\"jetstream\":true")
}

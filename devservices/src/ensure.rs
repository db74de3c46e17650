//! Make sure Postgres and NATS answer for Chronicle: use a server that answers, start a
//! throwaway one for a local address, and refuse to stand in for a remote one.

use anyhow::{bail, Context};
use sqlx::{ConnectOptions, Connection};

use crate::endpoint::Endpoint;
use crate::probe::{has_jetstream, nats_info, probe_postgres_settled, PgProbe};
use crate::tools::{self, port_open};
use crate::{nats, postgres, Nats, Postgres};

/// The URLs to give Chronicle, and the throwaway servers behind them (stopped on drop).
#[derive(Debug)]
pub struct Services {
    pub database_url: String,
    pub nats_url: String,
    pub postgres: Option<Postgres>,
    pub nats: Option<Nats>,
}

/// Prints one line per service (`postgres: using 127.0.0.1:5432`, `nats: started throwaway
/// server on ...`) and notes or errors on stderr, as scripts/serve and scripts/test always have.
pub async fn ensure_services(database_url: &str, nats_url: &str) -> anyhow::Result<Services> {
    let (database_url, postgres) = ensure_postgres(database_url).await?;
    let (nats_url, nats) = ensure_nats(nats_url)?;
    Ok(Services {
        database_url,
        nats_url,
        postgres,
        nats,
    })
}

async fn ensure_postgres(url: &str) -> anyhow::Result<(String, Option<Postgres>)> {
    let endpoint = Endpoint::parse(url, 5432).with_context(|| {
        format!("postgres: error: cannot parse the port of DATABASE_URL ({url})")
    })?;
    if endpoint.host.is_empty() && endpoint.rest.contains("host=") {
        eprintln!("postgres: using DATABASE_URL as is (host given as a query parameter)");
        return Ok((url.to_owned(), None));
    }
    let display = endpoint.display();
    let probe = probe_postgres_settled(url).await;
    if probe == PgProbe::Accepting {
        eprintln!("postgres: using {display}");
        return Ok((url.to_owned(), None));
    }
    if !endpoint.is_local() {
        match probe {
            PgProbe::LoginRejected(why) => bail!("postgres: error: {display} rejects the login: {why}"),
            _ => bail!(
                "postgres: error: no Postgres server accepts connections at {display} (from DATABASE_URL).\n\
                 postgres:        A throwaway cluster can only stand in for a local address (127.0.0.1/localhost); start that server or change DATABASE_URL."
            ),
        }
    }
    match &probe {
        PgProbe::LoginRejected(why) => eprintln!("postgres: note: the server at {display} rejects the login ({why}); starting a throwaway cluster instead"),
        PgProbe::NotReady => eprintln!("postgres: note: the server at {display} is not accepting connections; starting a throwaway cluster instead"),
        _ if port_open("127.0.0.1", endpoint.port) => eprintln!("postgres: note: {display} is taken by something that is not Postgres; starting a throwaway cluster on another port"),
        _ => {}
    }
    let bin = match postgres::find_server() {
        Some(bin) => bin,
        None if tools::can_install() => {
            tools::apt_install("postgres", "postgresql")?;
            // The package's postinst may have created and started a `main` cluster right there.
            if probe_postgres_settled(url).await == PgProbe::Accepting {
                eprintln!("postgres: using {display} (started by the package installation)");
                return Ok((url.to_owned(), None));
            }
            postgres::find_server().context(
                "postgres: error: installed 'postgresql' but still cannot find initdb/pg_ctl",
            )?
        }
        None => bail!(postgres::missing_server_message(&display)),
    };
    let cluster = Postgres::builder()
        .bin_dir(bin)
        .port(endpoint.port)
        .start()?;
    eprintln!(
        "postgres: started throwaway cluster on 127.0.0.1:{} (data in {})",
        cluster.port(),
        cluster.data_dir().display()
    );
    let url = if cluster.port() != endpoint.port || endpoint.host != "127.0.0.1" {
        endpoint.with_host_port("127.0.0.1", cluster.port())
    } else {
        url.to_owned()
    };
    create_role_and_database(&cluster, &endpoint).await;
    Ok((url, Some(cluster)))
}

/// The URL's role and database, so that tests connecting directly find them. Best effort: the
/// app creates its database itself, and reports what is still wrong.
async fn create_role_and_database(cluster: &Postgres, endpoint: &Endpoint) {
    let Ok(options) = cluster
        .url("postgres")
        .parse::<sqlx::postgres::PgConnectOptions>()
    else {
        return;
    };
    let Ok(mut admin) = options.disable_statement_logging().connect().await else {
        return;
    };
    let plain = |name: &str| {
        name.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let user = endpoint
        .user()
        .map(str::to_owned)
        .or_else(|| std::env::var("PGUSER").ok())
        .or_else(|| std::env::var("USER").ok());
    if let Some(role) = user.filter(|r| r != "postgres" && plain(r)) {
        let _ = sqlx::query(&format!("CREATE ROLE \"{role}\" LOGIN SUPERUSER"))
            .execute(&mut admin)
            .await;
    }
    if let Some(db) = endpoint.database().filter(|d| *d != "postgres" && plain(d)) {
        let _ = sqlx::query(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut admin)
            .await;
    }
    let _ = admin.close().await;
}

fn ensure_nats(url: &str) -> anyhow::Result<(String, Option<Nats>)> {
    let endpoint = Endpoint::parse(url, 4222)
        .with_context(|| format!("nats: error: cannot parse the port of NATS_URL ({url})"))?;
    let display = endpoint.display();
    if let Some(info) = nats_info(endpoint.host_or_localhost(), endpoint.port) {
        eprintln!("nats: using {display}");
        if !has_jetstream(&info) {
            eprintln!("nats: warning: the server at {display} does not advertise JetStream; Chronicle needs it (nats-server -js)");
        }
        return Ok((url.to_owned(), None));
    }
    if !endpoint.is_local() {
        bail!(
            "nats: error: no NATS server answers at {display} (from NATS_URL).\n\
             nats:        A throwaway server can only stand in for a local address (127.0.0.1/localhost); start that server or change NATS_URL."
        );
    }
    if port_open("127.0.0.1", endpoint.port) {
        eprintln!("nats: note: {display} is taken by something that is not NATS; starting a throwaway server on another port");
    }
    if nats::find_server().is_none() {
        if !tools::can_install() {
            bail!(nats::missing_server_message(&display));
        }
        tools::apt_install("nats", "nats-server")?;
        // The package may have started a system-wide server.
        if nats_info(endpoint.host_or_localhost(), endpoint.port).is_some() {
            eprintln!("nats: using {display} (started by the package installation)");
            return Ok((url.to_owned(), None));
        }
    }
    let server = Nats::builder()
        .port(endpoint.port)
        .own_process_group()
        .start()?;
    eprintln!(
        "nats: started throwaway server on 127.0.0.1:{} (JetStream data in {})",
        server.port(),
        server.store().display()
    );
    let url = if server.port() != endpoint.port || endpoint.host != "127.0.0.1" {
        endpoint.with_host_port("127.0.0.1", server.port())
    } else {
        url.to_owned()
    };
    Ok((url, Some(server)))
}

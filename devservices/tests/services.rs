//! Real throwaway servers: they answer, they are where the URLs say, and nothing of them is
//! left after drop. Only servers these tests start are ever stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use devservices::{
    ensure_services, has_jetstream, nats_info, port_open, probe_postgres, Nats, PgProbe, Postgres,
};

/// Polls `condition` until it holds, failing the test after `deadline`.
fn eventually(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn assert_gone(what: &str, dir: &Path, pid: u32, port: u16) {
    assert!(!dir.exists(), "{what}: {} still exists", dir.display());
    eventually(
        Duration::from_secs(10),
        &format!("{what} (pid {pid}) to exit"),
        || !alive(pid),
    );
    assert!(
        !port_open("127.0.0.1", port),
        "{what}: port {port} still open"
    );
}

#[tokio::test]
async fn a_throwaway_postgres_accepts_logins_and_is_gone_after_drop() {
    let pg = tokio::task::spawn_blocking(|| {
        Postgres::builder().setting("max_connections", "50").start()
    })
    .await
    .unwrap()
    .expect("a throwaway cluster starts");
    let (dir, pid, port) = (
        pg.dir().to_owned(),
        pg.postmaster_pid().expect("a postmaster"),
        pg.port(),
    );

    let probe = probe_postgres(&pg.url("postgres")).await;
    let created = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&pg.url("postgres"))
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>("SHOW max_connections")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    drop(pg);

    assert_eq!(probe, PgProbe::Accepting);
    assert_eq!(created, "50");
    assert_gone("postgres", &dir, pid, port);
}

#[tokio::test]
async fn a_cluster_stopped_or_crashed_starts_again_on_its_port() {
    let mut pg = Postgres::start().unwrap();
    let url = pg.url("postgres");

    pg.stop_fast().unwrap();
    let after_stop = probe_postgres(&url).await;
    pg.restart().unwrap();
    let after_first_restart = probe_postgres(&url).await;
    pg.crash().unwrap();
    pg.restart().unwrap();
    let after_crash_and_restart = probe_postgres(&url).await;

    assert_eq!(after_stop, PgProbe::Absent);
    assert_eq!(after_first_restart, PgProbe::Accepting);
    assert_eq!(after_crash_and_restart, PgProbe::Accepting);
}

#[test]
fn a_throwaway_nats_has_jetstream_survives_kill_and_restart_and_is_gone_after_drop() {
    let mut nats = Nats::builder()
        .args(&["--auth", "t0ken"])
        .start()
        .expect("nats-server starts");
    let (dir, port) = (nats.dir().to_owned(), nats.port());
    let greeting = nats_info("127.0.0.1", port).expect("a NATS greeting");

    nats.kill();
    let closed_after_kill = !port_open("127.0.0.1", port);
    nats.restart().expect("nats-server starts again");
    let pid = nats.pid().expect("running");
    let greeting_again = nats_info("127.0.0.1", port);
    drop(nats);

    assert!(has_jetstream(&greeting), "{greeting}");
    assert!(
        greeting.contains("\"auth_required\":true"),
        "the extra arguments apply: {greeting}"
    );
    assert!(closed_after_kill);
    assert!(greeting_again.is_some_and(|g| has_jetstream(&g)));
    assert_gone("nats", &dir, pid, port);
}

#[test]
fn a_clean_stop_ends_the_server_and_keeps_its_store() {
    let mut nats = Nats::start().unwrap();

    nats.stop(Duration::from_secs(10))
        .expect("nats-server stops on SIGTERM");

    assert!(!port_open("127.0.0.1", nats.port()));
    assert!(nats.store().exists());
}

#[tokio::test]
async fn local_addresses_nobody_answers_get_throwaways_on_those_ports() {
    let (pg_port, nats_port) = (
        devservices::free_port().unwrap(),
        devservices::free_port().unwrap(),
    );
    let database_url = format!("postgres://postgres@127.0.0.1:{pg_port}/chronicle_dev_test");
    let nats_url = format!("nats://127.0.0.1:{nats_port}");

    let services = ensure_services(&database_url, &nats_url)
        .await
        .expect("throwaways start");

    assert_eq!(services.database_url, database_url);
    assert_eq!(services.nats_url, nats_url);
    assert_eq!(probe_postgres(&database_url).await, PgProbe::Accepting);
    {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&database_url)
            .await
            .expect("the URL's database was created");
    }
    assert!(nats_info("127.0.0.1", nats_port).is_some_and(|i| has_jetstream(&i)));
    let pg = services.postgres.as_ref().expect("a throwaway cluster");
    let nats = services.nats.as_ref().expect("a throwaway nats-server");
    let pg_gone = (pg.dir().to_owned(), pg.postmaster_pid().unwrap());
    let nats_gone = (nats.dir().to_owned(), nats.pid().unwrap());
    tokio::task::spawn_blocking(move || drop(services))
        .await
        .unwrap();
    assert_gone("postgres", &pg_gone.0, pg_gone.1, pg_port);
    assert_gone("nats", &nats_gone.0, nats_gone.1, nats_port);
}

#[tokio::test]
async fn servers_that_answer_are_used_as_they_are() {
    let (pg, nats) =
        tokio::task::spawn_blocking(|| (Postgres::start().unwrap(), Nats::start().unwrap()))
            .await
            .unwrap();

    let services = ensure_services(&pg.url("postgres"), &nats.url())
        .await
        .unwrap();

    assert_eq!(services.database_url, pg.url("postgres"));
    assert_eq!(services.nats_url, nats.url());
    assert!(services.postgres.is_none() && services.nats.is_none());
    tokio::task::spawn_blocking(move || drop((pg, nats)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_taken_port_moves_the_throwaway_and_rewrites_the_url() {
    // Something that is neither Postgres nor NATS: it accepts and hangs up at once.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in squatter.incoming() {
            drop(stream);
        }
    });
    let nats_url = format!("nats://user:p%40ss@localhost:{port}");

    let pg = Postgres::start().unwrap();

    let services = ensure_services(&pg.url("postgres"), &nats_url)
        .await
        .expect("a throwaway on another port");

    let moved = services.nats.as_ref().unwrap().port();
    assert_ne!(moved, port);
    assert_eq!(
        services.nats_url,
        format!("nats://user:p%40ss@127.0.0.1:{moved}")
    );
    tokio::task::spawn_blocking(move || drop((services, pg)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_remote_server_is_an_error_not_a_throwaway() {
    let result = ensure_services(
        "postgres://postgres@db.invalid:5432/chronicle",
        "nats://127.0.0.1:1",
    )
    .await;

    let error = format!(
        "{:#}",
        result.expect_err("a remote address gets no stand-in")
    );
    assert!(
        error.contains("can only stand in for a local address"),
        "{error}"
    );
}

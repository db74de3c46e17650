//! Issue 12's findings at the edge: slow clients and connection floods (5), readiness that
//! believed any open port was NATS (10), `/metrics` (11) and development mode on a public
//! address (13).

use std::time::{Duration, Instant};

use chronicle::startup::{Application, BuildOptions};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{copy_bidirectional, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    metric_value, poll_pause, problem, test_config, OwnNats, ServerProcess, TestApp, TestDatabase,
};

fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; how long that took, or `None` if it stayed
/// open past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) off the stream.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the server closed the connection mid-response");
        bytes.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: chronicle\r\n\r\n";

#[tokio::test]
async fn a_slowloris_client_trickling_its_headers_is_cut_off_after_the_header_timeout() {
    let app = TestApp::spawn_with(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // One header byte every 100 ms: always active, never done.
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: chronicle\r\nX-Padding: {}",
            "a".repeat(1000)
        );
        let mut every = tokio::time::interval(Duration::from_millis(100));
        for byte in head.as_bytes() {
            every.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });

    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = loop {
        let limit = (started + Duration::from_secs(4)).into();
        match tokio::time::timeout_at(limit, reader.read(&mut buffer)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    };
    trickle.abort();

    let closed = closed.expect("the server kept a never-finished request head open for 4 s");
    eprintln!("a trickled head was cut off after {closed:?}");
    assert!(
        closed >= Duration::from_millis(900),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn a_client_that_connects_and_stays_silent_is_disconnected_after_the_header_timeout() {
    let app = TestApp::spawn_with(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();

    let closed = closed_within(&mut stream, Duration::from_secs(4)).await;

    assert!(closed.is_some(), "a silent connection stayed open for 4 s");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_serves_again() {
    let app = TestApp::spawn_with(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();

    stream.write_all(HEALTHZ).await.unwrap();
    let first = read_response(&mut stream).await;
    // Idle between requests for longer than a head may take: that is keep-alive, not slowloris.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let second = read_response(&mut stream).await;

    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes_and_is_then_served() {
    let app =
        TestApp::spawn_with(&[("MAX_CONNECTIONS", "2"), ("HEADER_READ_TIMEOUT", "30s")]).await;
    // Two kept-alive connections, each proven accepted by an answer.
    let mut first = TcpStream::connect(address(&app)).await.unwrap();
    let mut second = TcpStream::connect(address(&app)).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }

    // The kernel completes the handshake (the accept queue), but the server does not accept.
    let mut third = TcpStream::connect(address(&app)).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut byte = [0u8; 1];
    let while_full = tokio::time::timeout(Duration::from_millis(700), third.read(&mut byte)).await;
    drop(first);
    let after = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third)).await;

    assert!(
        while_full.is_err(),
        "a third connection was answered while two were open: {while_full:?}"
    );
    let after = after.expect("the waiting connection was served once a slot freed");
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
}

async fn nats_check(app: &TestApp) -> (StatusCode, Value) {
    let response = app.get("/readyz", None).await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn wait_for_nats(app: &TestApp, expected: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if nats_check(app).await.1["checks"]["nats"] == expected {
            return Some(started.elapsed());
        }
        poll_pause().await;
    }
    None
}

#[tokio::test]
async fn readyz_says_nats_is_down_when_its_port_accepts_but_does_not_speak_nats() {
    let impostor = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("nats://{}", impostor.local_addr().unwrap());
    let (accepted, mut connections) = watch::channel(0usize);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = impostor.accept().await {
            held.push(socket);
            let _ = accepted.send(held.len());
        }
    });
    let app = TestApp::spawn_with(&[("NATS_URL", url.as_str())]).await;
    // The server's client has reached the impostor: a TCP probe would now say `up`.
    tokio::time::timeout(Duration::from_secs(10), connections.wait_for(|n| *n > 0))
        .await
        .expect("the server connects to NATS_URL")
        .unwrap();

    let (status, body) = nats_check(&app).await;

    assert_eq!(status, StatusCode::OK, "NATS down does not fail readiness");
    assert_eq!(body["checks"]["postgres"], "up");
    assert_eq!(body["checks"]["nats"], "down");
}

#[tokio::test]
async fn readyz_follows_the_nats_connection_down_and_back_up_within_ten_seconds() {
    let mut nats = OwnNats::start();
    let app = TestApp::spawn_with(&[("NATS_URL", nats.url().as_str())]).await;
    let up_at_start = wait_for_nats(&app, "up", Duration::from_secs(10)).await;

    nats.kill();
    let down = wait_for_nats(&app, "down", Duration::from_secs(10)).await;
    nats.restart();
    let up_again = wait_for_nats(&app, "up", Duration::from_secs(10)).await;

    assert!(up_at_start.is_some(), "never up with NATS running");
    let down = down.expect("still `up` 10 s after NATS died");
    let up_again = up_again.expect("still `down` 10 s after NATS returned");
    eprintln!("nats down seen after {down:?}, up again after {up_again:?}");
}

#[tokio::test]
async fn readyz_says_nats_is_down_within_ten_seconds_when_the_path_to_it_goes_silent() {
    let shared = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let target = shared.trim_start_matches("nats://").to_owned();
    let (port, frozen) = freezing_proxy(target).await;
    let url = format!("nats://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("NATS_URL", url.as_str())]).await;
    let up = wait_for_nats(&app, "up", Duration::from_secs(10)).await;

    // No reset, no close: the socket just stops carrying anything, as behind a cut link.
    frozen.send(true).unwrap();
    let down = wait_for_nats(&app, "down", Duration::from_secs(10)).await;

    assert!(up.is_some(), "never up through the proxy");
    let down = down.expect("still `up` 10 s after the connection went silent");
    eprintln!("a silent NATS connection read down after {down:?}");
}

/// Every family API.md names, with a series that must read 0 on a fresh server.
const ZERO_SERIES: &[&str] = &[
    "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/metrics\",http_response_status_code=\"200\"}",
    "chronicle_relay_published_total",
    "chronicle_webhook_deliveries_total{outcome=\"succeeded\"}",
    "chronicle_webhook_deliveries_total{outcome=\"retrying\"}",
    "chronicle_webhook_deliveries_total{outcome=\"failed\"}",
    "chronicle_webhook_deliveries_total{outcome=\"gone\"}",
    "chronicle_emails_total{outcome=\"sent\"}",
    "chronicle_emails_total{outcome=\"failed\"}",
];

#[tokio::test]
async fn the_first_scrape_of_a_fresh_server_shows_every_family_at_zero() {
    // Its own process: the metrics registry is process-wide, and other tests' servers share
    // this one's.
    let db = TestDatabase::create().await;
    let stream = "TEST_METRICS_FRESH";
    // Scraped as soon as /healthz answers: the one route the scrape must not count at 0.
    let server = ServerProcess::start(&db, &["--no-workers"], &[("NATS_STREAM", stream)]).await;
    let metrics = server.metrics().await;
    drop(server);

    for series in ZERO_SERIES {
        assert_eq!(
            metric_value(&metrics, series),
            Some(0.0),
            "{series} in:\n{metrics}"
        );
    }
    for projector in projections::all_projectors() {
        for family in [
            "chronicle_projection_lag_events",
            "chronicle_projection_failed",
        ] {
            let series = format!("{family}{{projector=\"{}\"}}", projector.name());
            assert_eq!(
                metric_value(&metrics, &series),
                Some(0.0),
                "{series} in:\n{metrics}"
            );
        }
    }
    let relay = format!("chronicle_relay_lag_events{{stream=\"{stream}\"}}");
    assert_eq!(
        metric_value(&metrics, &relay),
        Some(0.0),
        "{relay} in:\n{metrics}"
    );
    // The scrape itself is in flight, on an open connection.
    assert_eq!(
        metric_value(&metrics, "http_server_active_requests"),
        Some(1.0)
    );
    assert!(metric_value(&metrics, "chronicle_http_connections_open").is_some_and(|n| n >= 1.0));
}

#[tokio::test]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let app = TestApp::spawn_with(&[("METRICS_TOKEN", "scrape-secret-0123456789")]).await;

    let without = app.get("/metrics", None).await;
    let wrong = app
        .request(reqwest::Method::GET, "/metrics", None)
        .bearer_auth("scrape-secret-012345678")
        .send()
        .await
        .unwrap();
    let right = app
        .request(reqwest::Method::GET, "/metrics", None)
        .bearer_auth("scrape-secret-0123456789")
        .send()
        .await
        .unwrap();

    problem(without, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    problem(wrong, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right
        .text()
        .await
        .unwrap()
        .contains("http_server_request_duration_seconds"));
}

/// A TCP proxy to Postgres that can freeze: connections stay open but nothing passes, as
/// with a hung database. A query through it never returns.
async fn freezing_proxy(target: String) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (frozen, watcher) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut frozen = watcher.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                let froze = tokio::select! {
                    _ = copy_bidirectional(&mut inbound, &mut outbound) => false,
                    _ = frozen.wait_for(|f| *f) => true,
                };
                if froze {
                    let _held = (inbound, outbound);
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    (port, frozen)
}

#[tokio::test]
async fn a_scrape_asks_nothing_of_the_database_so_it_answers_while_the_database_hangs() {
    let db = TestDatabase::create().await;
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let (port, frozen) =
        freezing_proxy(format!("{}:{}", options.get_host(), options.get_port())).await;
    let proxied = {
        use sqlx::ConnectOptions;
        options
            .host("127.0.0.1")
            .port(port)
            .to_url_lossy()
            .to_string()
    };
    let app = TestApp::spawn_on(db, &[("DATABASE_URL", proxied.as_str())]).await;
    app.register("scraped@example.com").await;

    frozen.send(true).unwrap();
    let started = Instant::now();
    let scrape = app
        .request(reqwest::Method::GET, "/metrics", None)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    let took = started.elapsed();

    let scrape = scrape.unwrap_or_else(|e| panic!("no scrape within 2 s of a hung database: {e}"));
    assert_eq!(scrape.status(), StatusCode::OK, "after {took:?}");
    assert!(scrape
        .text()
        .await
        .unwrap()
        .contains("chronicle_projection_lag_events"));
}

#[tokio::test]
async fn development_mode_with_its_public_key_refuses_to_listen_on_a_public_address() {
    let db = TestDatabase::create().await;
    let config = test_config(
        &db.url,
        &[("CHRONICLE_ENV", "development"), ("BIND_ADDR", "0.0.0.0:0")],
    );

    let built = Application::build(config, BuildOptions::default()).await;

    let error = match built {
        Ok(_) => panic!("a development server bound 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("loopback"), "{error}");
    assert!(error.contains("0.0.0.0:0"), "{error}");
}

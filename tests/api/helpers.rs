//! The test app: a real Chronicle server on a random port, against its own database cloned from
//! a migrated template, dropped when the test ends.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Once;
use std::time::Duration;

use chronicle::config::Config;
use chronicle::db::MIGRATOR;
use chronicle::startup::{Application, BuildOptions};
use chronicle::state::AppState;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

pub use crate::common::poll_pause;

/// The password of every admin that [`TestApp::admin`] creates.
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// `DATABASE_URL`'s `postgres` database: the configured one may not exist yet.
pub fn admin_database_url() -> String {
    devservices::admin_database_url().expect("DATABASE_URL is a postgres URL")
}

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            static GUARD: std::sync::OnceLock<chronicle::telemetry::Telemetry> =
                std::sync::OnceLock::new();
            if let Ok(Some(telemetry)) =
                chronicle::telemetry::init(chronicle::config::LogFormat::Pretty)
            {
                let _ = GUARD.set(telemetry);
            }
        }
    });
}

/// The template's name changes with the migrations, so a changed schema gets a new template.
fn template_name() -> String {
    let mut hasher = DefaultHasher::new();
    for migration in MIGRATOR.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("chronicle_tpl_{:016x}", hasher.finish())
}

async fn ensure_template(admin: &mut PgConnection) -> String {
    let template = template_name();
    // Test binaries and nextest processes race to build the template; an advisory lock lets one.
    sqlx::query("SELECT pg_advisory_lock(727274)")
        .execute(&mut *admin)
        .await
        .expect("lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut *admin)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .execute(&mut *admin)
            .await
            .expect("drop stale template");
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut *admin)
            .await
            .expect("create template");
        let url = with_database(&admin_database_url(), &building);
        let mut conn = PgConnection::connect(&url)
            .await
            .expect("connect to template");
        MIGRATOR.run(&mut conn).await.expect("migrate template");
        conn.close().await.expect("close template connection");
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut *admin)
            .await
            .expect("publish template");
    }
    sqlx::query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut *admin)
        .await
        .expect("unlock");
    template
}

pub fn with_database(url: &str, database: &str) -> String {
    devservices::with_database(url, database).expect("a postgres URL")
}

/// A database of its own for one test, cloned from the template and force-dropped on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_database_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to Postgres (is DATABASE_URL right?)");
        let template = ensure_template(&mut admin).await;
        let name = format!("chronicle_test_{}", uuid::Uuid::new_v4().simple());
        let mut attempts = 0;
        loop {
            match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                // Cloning needs the template idle; another test may be cloning it right now.
                Err(e)
                    if attempts < 50
                        && e.to_string().contains("is being accessed by other users") =>
                {
                    attempts += 1;
                    poll_pause().await;
                }
                Err(e) => panic!("cannot create the test database: {e}"),
            }
        }
        let _ = admin.close().await;
        Self {
            url: with_database(&admin_url, &name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = admin_database_url();
        // Drop runs outside any runtime we can block on; a short-lived one does the cleanup.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Dropped after the server, which drops the database; `None` for a second instance on
    /// another app's database.
    _db: Option<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The first instance on a database owns its stream; delete it so nothing is left.
        if self._db.is_some() {
            let url = self.state.config.nats_url.clone();
            let stream = self.state.config.nats_stream.clone();
            let _ = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let connect = async_nats::ConnectOptions::new()
                        .connection_timeout(Duration::from_secs(1))
                        .connect(url);
                    if let Ok(Ok(client)) =
                        tokio::time::timeout(Duration::from_secs(2), connect).await
                    {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A nats-server of the test's own (devservices'), on its own port and store, that the test may
/// kill and start again.
pub struct OwnNats(devservices::Nats);

impl OwnNats {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with more nats-server arguments (kept for restarts), e.g. `--user`/`--pass`.
    pub fn start_with(extra: &[&str]) -> Self {
        let nats = devservices::Nats::builder().args(extra).start();
        Self(nats.expect("nats-server starts (install Debian's nats-server)"))
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Starts again on the same port and store, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.0.restart().expect("nats-server starts again");
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// Deletes an app's NATS stream, for a test whose first app gave its database away (and with
/// it the stream's clean-up on drop).
pub async fn delete_stream(config: &Config) {
    delete_stream_named(config.nats_url.as_str(), &config.nats_stream).await;
}

pub async fn delete_stream_named(nats_url: &str, stream: &str) {
    let client = async_nats::connect(nats_url).await.expect("NATS");
    async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await
        .expect("the test's stream is deleted");
}

/// Every message of a stream, in stream order, as JSON documents.
pub async fn stream_messages(nats_url: &str, stream: &str) -> Vec<Value> {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(serde_json::from_slice(&message.payload).expect("JSON message"));
        }
    }
    messages
}

pub fn test_config(database_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("CHRONICLE_ENV", "test".to_owned()),
        // Tests sign up many users from one address; rate-limit tests set their own budgets.
        ("RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        // Test receivers listen on loopback; the refusal test turns this off again.
        ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms,100ms,100ms".to_owned()),
        (
            "JWT_SECRET",
            "test-secret-that-is-long-enough-for-hs256-0123".to_owned(),
        ),
        ("NATS_URL", devservices::nats_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Each app relays into a stream and subjects of its own, so tests never see each other's
    // events and the stream can be deleted afterwards.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    vars.insert("NATS_STREAM".to_owned(), format!("TEST_{unique}"));
    vars.insert("NATS_SUBJECT_PREFIX".to_owned(), format!("test.{unique}"));
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create().await;
        Self::spawn_on(db, extra).await
    }

    /// Starts a server on an existing database; `database_url` in `extra` may point elsewhere
    /// (e.g. through a proxy) while `db` still owns the cleanup.
    pub async fn spawn_on(db: TestDatabase, extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_options(db, extra, BuildOptions::default()).await
    }

    /// A server with its own choice of options, e.g. the API alone (`workers: false`).
    pub async fn spawn_with_options(
        db: TestDatabase,
        extra: &[(&str, &str)],
        options: BuildOptions,
    ) -> Self {
        init_logging();
        let config = test_config(&db.url, extra);
        let app = Application::build(config, options)
            .await
            .expect("the application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            state,
            _db: Some(db),
            shutdown: Some(tx),
        }
    }

    /// Hands the database's cleanup to the caller, so this server can stop while it lives on.
    pub fn take_database(&mut self) -> Option<TestDatabase> {
        self._db.take()
    }

    /// A second server on this app's database, as another instance would run.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(&[]).await
    }

    /// A second instance on this one's database and stream, with settings of its own.
    pub async fn another_instance_with(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut settings = vec![
            ("NATS_STREAM", self.state.config.nats_stream.as_str()),
            (
                "NATS_SUBJECT_PREFIX",
                self.state.config.nats_subject_prefix.as_str(),
            ),
            ("NATS_URL", self.state.config.nats_url.as_str()),
        ];
        settings.extend_from_slice(extra);
        let config = test_config(&self.state.config.database_url, &settings);
        let app = Application::build(config, BuildOptions::default())
            .await
            .expect("the second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        TestApp {
            address,
            client: self.client.clone(),
            state,
            _db: None,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(Method::PATCH, path, token, Some(body)).await
    }

    /// Registers a user and returns (user id, access token, the whole answer).
    pub async fn register(&self, email: &str) -> (String, String, Value) {
        let response = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "name": "Test User"}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "registering {email}"
        );
        let body: Value = response.json().await.expect("json");
        let id = body["data"]["user"]["id"]
            .as_str()
            .expect("user id")
            .to_owned();
        let token = body["data"]["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        (id, token, body)
    }

    /// Creates an admin the way an operator does (the CLI's path), then signs in.
    pub async fn admin(&self) -> (String, String) {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        self.admin_with_email(&email).await
    }

    /// Like [`TestApp::admin`], with a chosen email (the password is `ADMIN_PASSWORD`).
    pub async fn admin_with_email(&self, email: &str) -> (String, String) {
        let meta = chronicle::commands::CommandMeta {
            correlation_id: "test".into(),
            actor_id: None,
        };
        chronicle::app::accounts::register(
            &self.state,
            &meta,
            chronicle::app::accounts::Registration {
                email: aggregates::values::Email::parse(email).expect("email"),
                name: aggregates::values::UserName::parse("Admin").expect("name"),
                password: aggregates::values::Password::parse(ADMIN_PASSWORD).expect("password"),
                role: aggregates::Role::Admin,
            },
        )
        .await
        .expect("admin created");
        let response = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        (
            body["data"]["user"]["id"].as_str().expect("id").to_owned(),
            body["data"]["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
        )
    }

    pub async fn create_post(&self, token: &str, body: Value) -> Value {
        let response = self.post("/api/v1/posts", Some(token), body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["data"].clone()
    }

    pub async fn count_events(&self, aggregate_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(&self.state.pool)
            .await
            .expect("count events")
    }
}

/// Reads a problem document and checks the shape every error shares.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["code"], code, "problem: {body}");
    assert_eq!(body["trace_id"], request_id.as_str());
    assert!(body["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("https://")));
    body
}

/// A `chronicle serve` in a process of its own, for what is process-wide (the metrics
/// registry); killed on drop.
pub struct ServerProcess {
    _child: tokio::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts the binary on `db` with `args` after `serve` and `env` over the test settings;
    /// returns once `/healthz` answers.
    pub async fn start(db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
        command
            .arg("serve")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("CHRONICLE_ENV", "test")
            .env(
                "JWT_SECRET",
                "test-secret-that-is-long-enough-for-hs256-0123",
            )
            .env_remove("SMTP_URL")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("chronicle starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            poll_pause().await;
        }
        Self {
            _child: child,
            base,
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("a text body")
    }
}

/// One series' value in a Prometheus text scrape.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

//! A Postgres server of the test's own (a devservices throwaway cluster), which the test can stop
//! fast, crash with `kill -9` and start again, and the admin that a test makes on it.
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// A throwaway cluster of the test's own (devservices'). Stopped and removed when dropped.
pub struct PgServer {
    /// `None` only while a blocking call has it on another thread.
    server: Option<devservices::Postgres>,
}

impl PgServer {
    pub async fn start() -> Self {
        let server = tokio::task::spawn_blocking(|| {
            devservices::Postgres::builder()
                .setting("fsync", "off")
                .setting("max_connections", "300")
                .start()
        })
        .await
        .expect("joined")
        .expect("a throwaway cluster starts (install Postgres' server binaries)");
        Self {
            server: Some(server),
        }
    }

    pub fn url(&self, database: &str) -> String {
        self.server
            .as_ref()
            .expect("the server is here")
            .url(database)
    }

    /// Runs a blocking call off the runtime, so the app under test keeps running meanwhile.
    async fn blocking(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut devservices::Postgres) -> anyhow::Result<()> + Send + 'static,
    ) {
        let mut server = self.server.take().expect("the server is here");
        let (server, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = call(&mut server);
            (server, outcome)
        })
        .await
        .expect("joined");
        self.server = Some(server);
        if let Err(e) = outcome {
            panic!("{what}: {e:#}");
        }
    }

    /// Starts the server again on its port and waits until it accepts connections.
    pub async fn run(&mut self) {
        self.blocking("Postgres starts again", devservices::Postgres::restart)
            .await;
    }

    /// `pg_ctl stop -m fast`: sessions are terminated (57P01), open transactions rolled back.
    pub async fn stop_fast(&mut self) {
        self.blocking("Postgres stops", devservices::Postgres::stop_fast)
            .await;
    }

    /// `kill -9` of the postmaster.
    pub async fn crash(&mut self) {
        self.blocking(
            "SIGKILL sent to the postmaster",
            devservices::Postgres::crash,
        )
        .await;
    }
}

/// Creates an admin in the database at `database_url` (as the CLI does) and signs in at `base`.
pub async fn admin_token(database_url: &str, base: &str) -> String {
    let pool = PgPool::connect(database_url).await.expect("the database");
    let state =
        chronicle::state::AppState::new(crate::helpers::test_config(database_url, &[]), pool);
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    chronicle::app::accounts::register(
        &state,
        &chronicle::commands::CommandMeta {
            correlation_id: "fault-test".into(),
            actor_id: None,
        },
        chronicle::app::accounts::Registration {
            email: aggregates::values::Email::parse(&email).expect("email"),
            name: aggregates::values::UserName::parse("Admin").expect("name"),
            password: aggregates::values::Password::parse(crate::helpers::ADMIN_PASSWORD)
                .expect("password"),
            role: aggregates::Role::Admin,
        },
    )
    .await
    .expect("admin created");
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

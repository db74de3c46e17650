//! Load: clients that create posts back to back while the test breaks things, and what each
//! command got back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::support::{eventually, POLL};

/// One command of the load and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: Instant,
    pub latency: Duration,
    /// `None` when no HTTP answer came (refused, reset, timed out).
    pub status: Option<u16>,
    pub content_type: String,
    pub code: Option<String>,
    pub retry_after: Option<String>,
    pub detail: Option<String>,
    /// The created post when the answer was a 2xx.
    pub post_id: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn acked(&self) -> bool {
        self.post_id.is_some()
    }
}

/// Clients that create published posts (two events each) back to back until stopped.
/// Commands wait for the read models (read-your-writes) unless a client sends
/// `Prefer: respond-async`.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<Outcome>>>,
}

impl Load {
    pub fn start(base: &str, token: &str, clients: usize) -> Self {
        Self::spawn(base, token, clients, false)
    }

    /// Every other client sends `Prefer: respond-async`.
    pub fn start_mixed(base: &str, token: &str, clients: usize) -> Self {
        Self::spawn(base, token, clients, true)
    }

    fn spawn(base: &str, token: &str, clients: usize, mixed: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tasks = (0..clients)
            .map(|client| {
                let (http, stop, acked) = (http.clone(), stop.clone(), acked.clone());
                let url = format!("{base}/api/v1/posts");
                let token = token.to_owned();
                let respond_async = mixed && client % 2 == 1;
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let title = format!("load {client}-{n}");
                        let outcome = command(&http, &url, &token, &title, respond_async).await;
                        if outcome.acked() {
                            acked.fetch_add(1, Ordering::SeqCst);
                        } else {
                            // A refused or failed command is retried shortly, not in a hot loop.
                            tokio::time::sleep(POLL).await;
                        }
                        outcomes.push(outcome);
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `more` commands beyond `from` were acknowledged.
    pub async fn wait_for_acked(&self, from: usize, more: usize, deadline: Duration) {
        let acked = self.acked.clone();
        eventually(deadline, "acknowledged commands", || {
            let count = acked.load(Ordering::SeqCst);
            async move { (count >= from + more).then_some(()) }
        })
        .await;
    }

    /// Stops the clients after their current command and returns every outcome in send order.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load client"));
        }
        all.sort_by_key(|o| o.sent);
        all
    }
}

async fn command(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    title: &str,
    respond_async: bool,
) -> Outcome {
    let sent = Instant::now();
    let mut request = http.post(url).bearer_auth(token);
    if respond_async {
        request = request.header("prefer", "respond-async");
    }
    let result = request
        .json(&json!({"title": title, "body": "load", "status": "published"}))
        .send()
        .await;
    let mut outcome = Outcome {
        sent,
        latency: Duration::ZERO,
        status: None,
        content_type: String::new(),
        code: None,
        retry_after: None,
        detail: None,
        post_id: None,
        error: None,
    };
    match result {
        Ok(response) => {
            outcome.status = Some(response.status().as_u16());
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            outcome.content_type = header("content-type").unwrap_or_default();
            outcome.retry_after = header("retry-after");
            let success = response.status().is_success();
            match response.json::<Value>().await {
                Ok(body) if success => {
                    outcome.post_id = body["data"]["id"].as_str().map(str::to_owned);
                }
                Ok(body) => {
                    outcome.code = body["code"].as_str().map(str::to_owned);
                    outcome.detail = body["detail"].as_str().map(str::to_owned);
                }
                Err(e) => outcome.error = Some(e.to_string()),
            }
        }
        Err(e) => outcome.error = Some(e.to_string()),
    }
    outcome.latency = sent.elapsed();
    outcome
}

pub fn acked_ids(outcomes: &[Outcome]) -> Vec<String> {
    outcomes.iter().filter_map(|o| o.post_id.clone()).collect()
}

/// Registers through `base` and returns the access token.
pub async fn sign_up(base: &str, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery", "name": "Load"}))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

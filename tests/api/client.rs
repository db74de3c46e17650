//! A typed test client that reads like the API: `app.signed_up("ada").await` is a user with a
//! token, `ada.create_post(NewPost::draft("T", "B")).await.created()` the post, and
//! `.problem("NOT_FOUND")` checks a refusal. Every call answers an [`Answer`], the whole
//! response read at once, whose methods assert the status and hand out the `data` envelope's
//! content.
//!
//! [`App`] is a [`TestApp`] (it derefs to one) that must end with [`App::finish`]: the test
//! waits for its background work to be done, and dropping an app that was never finished fails
//! the test, so no test leaves work unprocessed unnoticed.

use std::ops::Deref;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// A test app that must be finished: see [`App::finish`].
pub struct App {
    app: TestApp,
    finished: bool,
}

impl Deref for App {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl App {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self {
            app: TestApp::spawn_with(extra).await,
            finished: false,
        }
    }

    /// A caller without credentials.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            app: &self.app,
            token: None,
        }
    }

    /// Signs up `<name>@example.com` (named "Test User", like [`TestApp::register`]).
    pub async fn signed_up(&self, name: &str) -> SignedIn<'_> {
        let (id, token, _) = self.app.register(&format!("{name}@example.com")).await;
        self.signed_in(id, token)
    }

    /// An admin, made the way an operator makes one (see [`TestApp::admin`]).
    pub async fn signed_in_admin(&self) -> SignedIn<'_> {
        let (id, token) = self.app.admin().await;
        self.signed_in(id, token)
    }

    /// A handle for a user whose id and access token the test already has.
    pub fn signed_in(&self, id: String, token: String) -> SignedIn<'_> {
        SignedIn {
            id,
            caller: Caller {
                app: &self.app,
                token: Some(token),
            },
        }
    }

    /// Waits until the background work is done ([`TestApp::drain`]) and ends the app.
    pub async fn finish(mut self) {
        self.app.drain().await;
        self.finished = true;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Drop cannot wait for the server: on a current-thread runtime its tasks stand still
        // while this runs. So the wait is `finish`, and this only checks it happened.
        if !self.finished && !std::thread::panicking() {
            panic!("the test ended without `app.finish().await`: its background work was never seen done");
        }
    }
}

/// Someone calling the API: anonymous, or with a bearer token.
#[derive(Clone)]
pub struct Caller<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl<'a> Caller<'a> {
    /// The bearer token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A request with this caller's credentials, for headers the methods below do not set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app.request(method, path, self.token())
    }

    /// Sends a request made with [`Caller::request`].
    pub async fn send(&self, request: RequestBuilder) -> Answer {
        let request = request.build().expect("a request");
        let what = format!("{} {}", request.method(), request.url().path());
        let response = self
            .app
            .client
            .execute(request)
            .await
            .expect("request sent");
        Answer::read(what, response).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// GET with query parameters, encoded by the client.
    pub async fn get_with(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        self.send(self.request(Method::GET, path).query(params))
            .await
    }

    pub async fn post(&self, path: &str, body: impl Into<Value>) -> Answer {
        self.call(Method::POST, path, Some(body.into())).await
    }

    pub async fn patch(&self, path: &str, body: impl Into<Value>) -> Answer {
        self.call(Method::PATCH, path, Some(body.into())).await
    }

    pub async fn put(&self, path: &str, body: impl Into<Value>) -> Answer {
        self.call(Method::PUT, path, Some(body.into())).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_post(&self, post: impl Into<Value>) -> Answer {
        self.post("/api/v1/posts", post).await
    }

    pub async fn get_post(&self, id: &str) -> Answer {
        self.get(&post_path(id)).await
    }

    pub async fn patch_post(&self, id: &str, changes: impl Into<Value>) -> Answer {
        self.patch(&post_path(id), changes).await
    }

    pub async fn put_post(&self, id: &str, post: impl Into<Value>) -> Answer {
        self.put(&post_path(id), post).await
    }

    pub async fn delete_post(&self, id: &str) -> Answer {
        self.delete(&post_path(id)).await
    }

    pub async fn publish(&self, id: &str) -> Answer {
        self.post(&format!("{}/publish", post_path(id)), json!({}))
            .await
    }

    pub async fn unpublish(&self, id: &str) -> Answer {
        self.post(&format!("{}/unpublish", post_path(id)), json!({}))
            .await
    }

    pub async fn post_history(&self, id: &str) -> Answer {
        self.get(&format!("{}/history", post_path(id))).await
    }
}

fn post_path(id: &str) -> String {
    format!("/api/v1/posts/{id}")
}

/// A signed-up or signed-in user: their id, and a [`Caller`] with their token.
#[derive(Clone)]
pub struct SignedIn<'a> {
    pub id: String,
    caller: Caller<'a>,
}

impl<'a> Deref for SignedIn<'a> {
    type Target = Caller<'a>;

    fn deref(&self) -> &Caller<'a> {
        &self.caller
    }
}

/// A post to create: `NewPost::draft("Title", "Body").tags(&["rust"])`.
pub struct NewPost(Value);

impl NewPost {
    pub fn draft(title: &str, body: &str) -> Self {
        Self(json!({"title": title, "body": body}))
    }

    pub fn published(title: &str, body: &str) -> Self {
        Self(json!({"title": title, "body": body, "status": "published"}))
    }

    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.0["tags"] = json!(tags);
        self
    }
}

impl From<NewPost> for Value {
    fn from(post: NewPost) -> Value {
        post.0
    }
}

/// A whole response, read: status, headers and body.
pub struct Answer {
    /// Method and path, for failure messages.
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    pub async fn read(what: String, response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        Self {
            what,
            status,
            headers,
            text,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header").to_owned())
    }

    /// The body as it came, byte for byte.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole body as JSON, whatever the status.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.text))
    }

    /// Asserts the status; the whole body.
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.what, self.text);
        self.json()
    }

    /// Asserts 201 Created; the `data`.
    pub fn created(self) -> Value {
        self.expect(StatusCode::CREATED)["data"].take()
    }

    /// Asserts 200 OK; the `data`.
    pub fn ok(self) -> Value {
        self.expect(StatusCode::OK)["data"].take()
    }

    /// Asserts 204 No Content and an empty body.
    pub fn no_content(self) {
        assert_eq!(
            self.status,
            StatusCode::NO_CONTENT,
            "{}: {}",
            self.what,
            self.text
        );
        assert_eq!(self.text, "", "{}: a 204 has no body", self.what);
    }

    /// Asserts an RFC 9457 problem with this `code`, at the status the contract gives the code,
    /// with the shape every problem shares (as [`crate::helpers::problem`] checks it); the
    /// whole problem document.
    pub fn problem(self, code: &str) -> Value {
        let status = status_of(code);
        assert_eq!(self.status, status, "{}: {}", self.what, self.text);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.what
        );
        let request_id = self.header("x-request-id").unwrap_or_default();
        let body = self.json();
        assert_eq!(body["status"], status.as_u16(), "{}: {body}", self.what);
        assert_eq!(body["code"], code, "{}: problem: {body}", self.what);
        assert_eq!(body["trace_id"], request_id.as_str(), "{}", self.what);
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://")),
            "{}: {body}",
            self.what
        );
        body
    }
}

/// The status a problem `code` comes with (API.md's table).
fn status_of(code: &str) -> StatusCode {
    match code {
        "MALFORMED_REQUEST" | "BAD_REQUEST" => StatusCode::BAD_REQUEST,
        "UNAUTHORIZED" | "INVALID_CREDENTIALS" | "TOKEN_EXPIRED" | "TOKEN_REUSED" => {
            StatusCode::UNAUTHORIZED
        }
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
        "TIMEOUT" => StatusCode::REQUEST_TIMEOUT,
        "CONFLICT" | "EMAIL_TAKEN" | "INVALID_STATE_TRANSITION" | "IDEMPOTENCY_KEY_IN_USE" => {
            StatusCode::CONFLICT
        }
        "PRECONDITION_FAILED" => StatusCode::PRECONDITION_FAILED,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "UNSUPPORTED_MEDIA_TYPE" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "VALIDATION_ERROR" | "IDEMPOTENCY_KEY_REUSED" => StatusCode::UNPROCESSABLE_ENTITY,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "INTERNAL_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        "SERVICE_UNAVAILABLE" | "PROJECTION_LAGGING" => StatusCode::SERVICE_UNAVAILABLE,
        other => panic!("no status known for the problem code {other}"),
    }
}

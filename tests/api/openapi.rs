//! `/openapi.json` and `/docs`: the document matches the routes the server answers and the
//! operations API.md promises, validates as OpenAPI 3.1, and the page renders it in a browser.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// What the server serves beyond API.md's tables: the operator page of the operators' issue
/// (a page and its three assets, all calling the API above).
const BEYOND_API_MD: &[(&str, &str)] = &[
    ("GET", "/admin"),
    ("GET", "/admin/app.js"),
    ("GET", "/admin/app.css"),
    ("GET", "/admin/charts.js"),
    // The operator page's retry button for failed emails (issue 13); API.md names only the list.
    ("POST", "/api/v1/admin/emails/{id}/retry"),
    // The operator page's charts and failures (issue 16).
    ("GET", "/api/v1/admin/activity"),
    ("GET", "/api/v1/admin/failures"),
];

/// Every operation in API.md that the server serves today, as `(METHOD, path)`.
const CONTRACT: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions/{id}"),
    ("POST", "/api/v1/api-keys"),
    ("GET", "/api/v1/api-keys"),
    ("DELETE", "/api/v1/api-keys/{id}"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("GET", "/api/v1/users/{id}"),
    ("PATCH", "/api/v1/users/{id}"),
    ("PUT", "/api/v1/users/{id}"),
    ("DELETE", "/api/v1/users/{id}"),
    ("POST", "/api/v1/users/{id}/verify-email"),
    ("POST", "/api/v1/users/{id}/send-verification"),
    ("POST", "/api/v1/users/{id}/password"),
    ("GET", "/api/v1/users/{id}/posts"),
    ("GET", "/api/v1/users/{id}/history"),
    ("GET", "/api/v1/posts"),
    ("POST", "/api/v1/posts"),
    ("GET", "/api/v1/posts/{id}"),
    ("PATCH", "/api/v1/posts/{id}"),
    ("PUT", "/api/v1/posts/{id}"),
    ("DELETE", "/api/v1/posts/{id}"),
    ("POST", "/api/v1/posts/{id}/publish"),
    ("POST", "/api/v1/posts/{id}/unpublish"),
    ("GET", "/api/v1/posts/{id}/history"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/{id}"),
    ("PATCH", "/api/v1/webhooks/{id}"),
    ("DELETE", "/api/v1/webhooks/{id}"),
    ("POST", "/api/v1/webhooks/{id}/rotate-secret"),
    ("POST", "/api/v1/webhooks/{id}/test"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"),
    (
        "POST",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    ),
    ("POST", "/api/v1/webhooks/{id}/replay"),
    ("GET", "/api/v1/analytics/summary"),
    ("GET", "/api/v1/analytics/timeseries"),
    ("GET", "/api/v1/admin/projections"),
    ("POST", "/api/v1/admin/projections/{name}/rebuild"),
    ("GET", "/api/v1/admin/emails"),
];

/// Operations API.md promises that no route serves yet. Serving one without documenting it
/// fails here; documenting it means moving it to [`CONTRACT`].
const NOT_YET_SERVED: &[(&str, &str)] = &[];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn served_document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("the document is JSON")
}

/// `path -> {METHOD}` of the document.
fn operations(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// The path with every `{parameter}` replaced by a random UUID.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods the router serves on `path`, from the `Allow` of the 405 it gives to `TRACE`
/// (which no route serves); `None` when no route matches the path at all.
async fn routed_methods(app: &TestApp, path: &str) -> Option<BTreeSet<String>> {
    let response = app.request(Method::TRACE, path, None).send().await.unwrap();
    match response.status() {
        StatusCode::NOT_FOUND => None,
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response.headers()["allow"].to_str().unwrap().to_owned();
            let mut methods: BTreeSet<String> =
                allow.split(',').map(|m| m.trim().to_owned()).collect();
            // axum answers HEAD wherever it answers GET; OpenAPI leaves that implied.
            if methods.contains("GET") {
                methods.remove("HEAD");
            }
            Some(methods)
        }
        other => panic!("TRACE {path} answered {other}, expected 404 or 405"),
    }
}

#[tokio::test]
async fn every_documented_operation_is_served_with_exactly_the_documented_methods() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;

    for (template, documented) in operations(&document) {
        let path = concrete(&template);
        let routed = routed_methods(&app, &path).await;
        assert_eq!(
            routed.as_ref(),
            Some(&documented),
            "{template}: the router's methods (Allow) differ from the document's"
        );
        for method in &documented {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = app
                .request(method.clone(), &path, None)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !status.is_server_error(),
                "{method} {path} answered {status}"
            );
        }
    }
}

#[tokio::test]
async fn the_document_lists_every_operation_of_api_md_and_nothing_else() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;

    let documented: BTreeSet<(String, String)> = operations(&document)
        .into_iter()
        .flat_map(|(path, methods)| methods.into_iter().map(move |m| (m, path.clone())))
        .collect();
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .chain(BEYOND_API_MD)
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();

    let missing: Vec<_> = contract.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&contract).collect();
    assert!(missing.is_empty(), "in API.md, not documented: {missing:?}");
    assert!(
        extra.is_empty(),
        "documented, not in API.md (nor in BEYOND_API_MD): {extra:?}"
    );
    for (method, template) in NOT_YET_SERVED {
        let routed = routed_methods(&app, &concrete(template)).await;
        assert!(
            !routed.is_some_and(|methods| methods.contains(*method)),
            "{method} {template} is served but not documented"
        );
    }
}

#[tokio::test]
async fn the_served_document_is_the_generated_one_and_describes_chronicle() {
    let app = TestApp::spawn().await;

    let document = served_document(&app).await;

    let generated = serde_json::to_value(chronicle::http::openapi()).unwrap();
    assert_eq!(document, generated);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "Chronicle");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(
        document["components"]["responses"]["NotFound"]["content"]["application/problem+json"]
            ["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_for_an_independent_validator() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let file = std::env::temp_dir().join(format!(
        "chronicle-openapi-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, serde_json::to_vec(&document).unwrap()).unwrap();

    let installed = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .expect("python3 runs (install Python 3)");
    assert!(
        installed.status.success(),
        "the validator is missing: run `pip install openapi-spec-validator` (scripts/test does)"
    );
    let validation = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);

    assert!(
        validation.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&validation.stdout),
        String::from_utf8_lossy(&validation.stderr)
    );
}

/// Runs headless Chromium on `url` and returns the DOM after the page's scripts ran.
async fn rendered_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "chronicle-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("chromium is missing: run `apt-get install -y chromium` (scripts/test does)")
        }
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    let group = child.id().expect("chromium's pid");

    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await;

    // Chromium's helper processes share its process group; none may outlive the test.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&profile);
    let output = output
        .expect("chromium finished within 60 s")
        .expect("chromium ran");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_in_a_headless_browser() {
    let app = TestApp::spawn().await;
    let document = served_document(&app).await;
    let page = app.get("/docs", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let static_html = page.text().await.unwrap();
    assert!(!static_html.contains("/api/v1/posts/{id}/publish"));
    assert!(!static_html.contains("Publish a post."));

    let dom = rendered_dom(&app.url("/docs")).await;

    assert!(dom.contains("/api/v1/posts/{id}/publish"), "DOM:\n{dom}");
    assert!(dom.contains("Publish a post."), "DOM:\n{dom}");
    assert!(dom.contains(r#"<span class="method post">POST</span>"#));
    let rendered = dom.matches(r#"<details class="op""#).count();
    let documented: usize = operations(&document).values().map(BTreeSet::len).sum();
    assert_eq!(rendered, documented, "one row per operation");
    for (path, methods) in operations(&document) {
        for method in methods {
            let row = format!(
                r#"data-method="{}" data-path="{path}""#,
                method.to_lowercase()
            );
            assert!(dom.contains(&row), "no row for {method} {path}");
        }
    }
    assert!(dom.contains(r#"<section id="tag-posts">"#));
}

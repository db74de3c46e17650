//! The authorization matrix: every route of API.md against anonymous callers, another user,
//! the owner, an admin and an admin's API key.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Other,
    Owner,
    Admin,
    ApiKey,
}

use Caller::{Admin, Anonymous, ApiKey, Other, Owner};

/// The people and things one row of the matrix acts on.
struct World {
    owner_id: String,
    owner: String,
    other: String,
    admin: String,
    api_key: String,
    draft: String,
    published: String,
    api_key_id: String,
}

async fn world(app: &TestApp, admin: &str, api_key: &str) -> World {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (owner_id, owner, _) = app.register(&format!("owner-{tag}@example.com")).await;
    let (_, other, _) = app.register(&format!("other-{tag}@example.com")).await;
    let draft = app
        .create_post(&owner, json!({"title": "draft", "body": "b"}))
        .await;
    let published = app
        .create_post(
            &owner,
            json!({"title": "pub", "body": "b", "status": "published"}),
        )
        .await;
    let spare_key: Value = app
        .post("/api/v1/api-keys", Some(admin), json!({"name": "spare"}))
        .await
        .json()
        .await
        .unwrap();
    World {
        owner_id,
        owner,
        other,
        admin: admin.to_owned(),
        api_key: api_key.to_owned(),
        draft: draft["id"].as_str().unwrap().to_owned(),
        published: published["id"].as_str().unwrap().to_owned(),
        api_key_id: spare_key["data"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn call(
    app: &TestApp,
    w: &World,
    caller: Caller,
    method: &Method,
    path: &str,
    body: &Option<Value>,
) -> StatusCode {
    let path = path
        .replace("{user}", &w.owner_id)
        .replace("{draft}", &w.draft)
        .replace("{published}", &w.published)
        .replace("{key}", &w.api_key_id);
    let mut request = app.request(method.clone(), &path, None);
    request = match caller {
        Anonymous => request,
        Other => request.bearer_auth(&w.other),
        Owner => request.bearer_auth(&w.owner),
        Admin => request.bearer_auth(&w.admin),
        ApiKey => request.header("x-api-key", &w.api_key),
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn every_route_gives_each_kind_of_caller_the_documented_status() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin().await;
    let key: Value = app
        .post("/api/v1/api-keys", Some(&admin), json!({"name": "matrix"}))
        .await
        .json()
        .await
        .unwrap();
    let api_key = key["data"]["key"].as_str().unwrap().to_owned();
    let shared = world(&app, &admin, &api_key).await;
    let patch_post = Some(json!({"title": "changed"}));
    let put_post = Some(json!({"title": "t", "body": "b", "tags": []}));
    let profile = Some(json!({"name": "n", "bio": "b"}));
    let none: Option<Value> = None;
    let empty = Some(json!({}));
    use StatusCode as S;
    let g = Method::GET;
    let p = Method::POST;

    // (method, path, body, [anonymous, other user, owner, admin, api key])
    let read_only: Vec<(Method, &str, Option<Value>, [S; 5])> = vec![
        (
            g.clone(),
            "/api/v1/me",
            none.clone(),
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/me/sessions",
            none.clone(),
            // A key never reads its creator's sessions.
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK, S::FORBIDDEN],
        ),
        (
            g.clone(),
            "/api/v1/api-keys",
            none.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/users",
            none.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/users/{user}",
            none.clone(),
            [S::UNAUTHORIZED, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/users/{user}/posts",
            none.clone(),
            [S::OK, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/users/{user}/history",
            none.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/posts",
            none.clone(),
            [S::OK, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/posts/{draft}",
            none.clone(),
            [S::NOT_FOUND, S::NOT_FOUND, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/posts/{published}",
            none.clone(),
            [S::OK, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/posts/{draft}/history",
            none.clone(),
            [S::UNAUTHORIZED, S::NOT_FOUND, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/posts/{published}/history",
            none.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::OK, S::OK, S::OK],
        ),
        (
            g.clone(),
            "/api/v1/events",
            none.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            p.clone(),
            "/api/v1/users/{user}/verify-email",
            Some(json!({"token": "wrong"})),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::UNPROCESSABLE_ENTITY,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            p.clone(),
            "/api/v1/users/{user}/password",
            Some(json!({"current_password": "not the one", "new_password": "long enough now"})),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &read_only {
        for (caller, want) in [Anonymous, Other, Owner, Admin, ApiKey]
            .into_iter()
            .zip(expected)
        {
            let got = call(&app, &shared, caller, method, path, body).await;
            if got != *want {
                failures.push(format!(
                    "{method} {path} as {caller:?}: expected {want}, got {got}"
                ));
            }
        }
    }

    // Changes run on a fresh world per caller, so one caller's success cannot hide another's.
    let changes: Vec<(Method, &str, Option<Value>, [S; 5])> = vec![
        (
            p.clone(),
            "/api/v1/posts",
            Some(json!({"title": "t", "body": "b"})),
            [
                S::UNAUTHORIZED,
                S::CREATED,
                S::CREATED,
                S::CREATED,
                S::CREATED,
            ],
        ),
        (
            Method::PATCH,
            "/api/v1/posts/{draft}",
            patch_post.clone(),
            [S::UNAUTHORIZED, S::NOT_FOUND, S::OK, S::OK, S::OK],
        ),
        (
            Method::PUT,
            "/api/v1/posts/{draft}",
            put_post.clone(),
            [S::UNAUTHORIZED, S::NOT_FOUND, S::OK, S::OK, S::OK],
        ),
        (
            p.clone(),
            "/api/v1/posts/{draft}/publish",
            empty.clone(),
            [S::UNAUTHORIZED, S::NOT_FOUND, S::OK, S::OK, S::OK],
        ),
        (
            p.clone(),
            "/api/v1/posts/{published}/unpublish",
            empty.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::OK, S::OK, S::OK],
        ),
        (
            Method::DELETE,
            "/api/v1/posts/{draft}",
            none.clone(),
            [
                S::UNAUTHORIZED,
                S::NOT_FOUND,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::NO_CONTENT,
            ],
        ),
        (
            Method::PATCH,
            "/api/v1/users/{user}",
            Some(json!({"bio": "x"})),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::OK, S::OK, S::OK],
        ),
        (
            Method::PATCH,
            "/api/v1/users/{user}",
            Some(json!({"role": "admin"})),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK],
        ),
        (
            Method::PUT,
            "/api/v1/users/{user}",
            profile.clone(),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::OK, S::OK, S::OK],
        ),
        (
            Method::DELETE,
            "/api/v1/users/{user}",
            none.clone(),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::NO_CONTENT,
            ],
        ),
        (
            p.clone(),
            "/api/v1/users",
            Some(
                json!({"email": "made-{user}@example.com", "name": "n", "password": "long enough pw"}),
            ),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::CREATED,
                S::CREATED,
            ],
        ),
        (
            p.clone(),
            "/api/v1/api-keys",
            Some(json!({"name": "k"})),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::CREATED,
                S::CREATED,
            ],
        ),
        (
            Method::DELETE,
            "/api/v1/api-keys/{key}",
            none.clone(),
            [
                S::UNAUTHORIZED,
                S::FORBIDDEN,
                S::FORBIDDEN,
                S::NO_CONTENT,
                S::NO_CONTENT,
            ],
        ),
        (
            p.clone(),
            "/api/v1/auth/logout",
            none.clone(),
            // A key never signs its creator out.
            [
                S::UNAUTHORIZED,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::FORBIDDEN,
            ],
        ),
        (
            p.clone(),
            "/api/v1/auth/logout-all",
            none.clone(),
            [
                S::UNAUTHORIZED,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::FORBIDDEN,
            ],
        ),
    ];
    for (method, path, body, expected) in &changes {
        for (caller, want) in [Anonymous, Other, Owner, Admin, ApiKey]
            .into_iter()
            .zip(expected)
        {
            // Signing out ends the admin's sessions too, so those rows get an admin of their own.
            let fresh = if path.contains("logout") {
                let (_, own_admin) = app.admin().await;
                let key: Value = app
                    .post("/api/v1/api-keys", Some(&own_admin), json!({"name": "own"}))
                    .await
                    .json()
                    .await
                    .unwrap();
                world(&app, &own_admin, key["data"]["key"].as_str().unwrap()).await
            } else {
                world(&app, &admin, &api_key).await
            };
            let body = body.as_ref().map(|b| {
                serde_json::from_str(&b.to_string().replace("{user}", &fresh.owner_id)).unwrap()
            });
            let got = call(&app, &fresh, caller, method, path, &body).await;
            if got != *want {
                failures.push(format!(
                    "{method} {path} as {caller:?}: expected {want}, got {got}"
                ));
            }
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

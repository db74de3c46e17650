//! The user side of the read model: the admins' user list, `/me` and `/me/sessions`.

use std::collections::{HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::problem;
use crate::reads::{
    header, id_of, ids, keys, list, login, register_as, session_of, set, spawn_app, walk, Params,
};

#[tokio::test]
async fn admins_list_users_by_role_status_time_and_text_and_users_may_not() {
    let app = spawn_app().await;
    let (admin_id, admin) = app.admin().await;
    let (mia, mia_token) = register_as(&app, "mia@example.com", "Zoe Quill").await;
    let (bob, _) = register_as(&app, "bob@example.com", "Bob Builder").await;
    let (aaron, _) = register_as(&app, "aaron@example.com", "Carol Danvers").await;
    let bio = app
        .patch(
            &format!("/api/v1/users/{mia}"),
            Some(&mia_token),
            json!({"bio": "Loves rabbits and carrots"}),
        )
        .await;
    assert_eq!(bio.status(), StatusCode::OK);
    let promoted = app
        .patch(
            &format!("/api/v1/users/{bob}"),
            Some(&admin),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let deactivated = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{aaron}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    let everyone = list(&app, "/api/v1/users", &[], Some(&admin)).await;
    let created: HashMap<String, String> = everyone["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (id_of(u), u["created_at"].as_str().unwrap().to_owned()))
        .collect();
    let cases: Vec<(Params, Vec<&String>)> = vec![
        (vec![], vec![&aaron, &bob, &mia, &admin_id]),
        (vec![("role", "admin")], vec![&bob, &admin_id]),
        (vec![("role", "user")], vec![&aaron, &mia]),
        (vec![("status", "deactivated")], vec![&aaron]),
        (vec![("status", "active")], vec![&bob, &mia, &admin_id]),
        (vec![("role", "user"), ("status", "active")], vec![&mia]),
        (vec![("q", "rabbits")], vec![&mia]),
        (vec![("q", "quill")], vec![&mia]),
        (vec![("q", "bob@example.com")], vec![&bob]),
        (vec![("q", "danvers")], vec![&aaron]),
        (vec![("q", "nobody")], vec![]),
        (vec![("created_after", &created[&mia])], vec![&aaron, &bob]),
        (
            vec![("created_before", &created[&bob])],
            vec![&mia, &admin_id],
        ),
        (vec![("sort", "name")], vec![&admin_id, &bob, &aaron, &mia]),
        (vec![("sort", "-name")], vec![&mia, &aaron, &bob, &admin_id]),
        (vec![("sort", "email")], vec![&aaron, &admin_id, &bob, &mia]),
        (
            vec![("sort", "-email")],
            vec![&mia, &bob, &admin_id, &aaron],
        ),
        (
            vec![("sort", "created_at")],
            vec![&admin_id, &mia, &bob, &aaron],
        ),
    ];

    let mut results = Vec::new();
    for (params, _) in &cases {
        results.push(ids(&list(&app, "/api/v1/users", params, Some(&admin)).await));
    }
    let walked = walk(
        &app,
        "/api/v1/users",
        &[("sort", "-name"), ("limit", "1")],
        Some(&admin),
    )
    .await;
    let by_user = app.get("/api/v1/users", Some(&mia_token)).await;
    let anonymous = app.get("/api/v1/users", None).await;

    for ((params, expected), got) in cases.iter().zip(results) {
        let expected: Vec<String> = expected.iter().map(|s| (*s).clone()).collect();
        assert_eq!(got, expected, "{params:?}");
    }
    assert_eq!(
        walked.iter().map(id_of).collect::<Vec<_>>(),
        vec![mia.clone(), aaron.clone(), bob.clone(), admin_id.clone()]
    );
    let mia_row = everyone["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == mia.as_str())
        .unwrap();
    assert_eq!(mia_row["email"], "mia@example.com");
    assert_eq!(mia_row["bio"], "Loves rabbits and carrots");
    assert!(!everyone.to_string().contains("password"));
    problem(by_user, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    app.finish().await;
}

#[tokio::test]
async fn me_is_the_full_user_and_sessions_mark_the_calling_one_as_current() {
    let app = spawn_app().await;
    let (id, first_token, _) = app.register("me@example.com").await;
    let (_, other_token, _) = app.register("someone@example.com").await;
    let second = login(&app, "me@example.com", "queries-test/2").await;
    assert_eq!(second.status(), StatusCode::OK);
    let second_token = second.json::<Value>().await.unwrap()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (first_sid, second_sid) = (session_of(&first_token), session_of(&second_token));

    let me = app.get("/api/v1/me", Some(&first_token)).await;
    let as_first = app.get("/api/v1/me/sessions", Some(&first_token)).await;
    let as_second = app.get("/api/v1/me/sessions", Some(&second_token)).await;
    let anonymous = app.get("/api/v1/me", None).await;

    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(header(&me, "cache-control").as_deref(), Some("no-store"));
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        keys(&me["data"]),
        set(&[
            "id",
            "email",
            "name",
            "bio",
            "role",
            "status",
            "email_verified",
            "created_at",
            "updated_at",
            "version"
        ])
    );
    assert_eq!(me["data"]["id"], id.as_str());
    assert_eq!(me["data"]["email"], "me@example.com");
    assert_eq!(me["data"]["role"], "user");
    assert_eq!(me["data"]["status"], "active");
    assert_eq!(as_first.status(), StatusCode::OK);
    assert_eq!(
        header(&as_first, "cache-control").as_deref(),
        Some("no-store")
    );
    let as_first: Value = as_first.json().await.unwrap();
    let as_second: Value = as_second.json().await.unwrap();
    for (body, current) in [(&as_first, &first_sid), (&as_second, &second_sid)] {
        let sessions = body["data"].as_array().unwrap();
        assert_eq!(
            sessions.iter().map(id_of).collect::<HashSet<_>>(),
            HashSet::from([first_sid.clone(), second_sid.clone()]),
            "only this user's two sessions, not {}",
            session_of(&other_token)
        );
        let currents: Vec<String> = sessions
            .iter()
            .filter(|s| s["current"] == true)
            .map(id_of)
            .collect();
        assert_eq!(currents, std::slice::from_ref(current));
        for session in sessions {
            for key in [
                "id",
                "created_at",
                "last_used_at",
                "ip",
                "user_agent",
                "current",
            ] {
                assert!(session.get(key).is_some(), "{key} in {session}");
            }
        }
    }
    let second_session = as_first["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == second_sid.as_str())
        .unwrap();
    assert_eq!(second_session["user_agent"], "queries-test/2");
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    app.finish().await;
}

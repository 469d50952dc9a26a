//! The JSON API over HTTP on loopback, against a real PostgreSQL.

mod common;

use std::time::Duration;

use auth_sessions::SessionPolicy;
use common::{PASSWORD, TestDb, http, settings, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn login(base: &str, email: &str, device: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(device) = device {
        body["device"] = json!(device);
    }
    let response = http()
        .post(format!("{base}/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn s(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .to_owned()
}

async fn get(base: &str, path: &str, access: &str) -> (StatusCode, Value) {
    let response = http()
        .get(format!("{base}{path}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn refresh(base: &str, token: &str) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_whole_flow() {
    let db = TestDb::new().await;
    db.user("ann@example.test").await;
    let policy = SessionPolicy::default().rotation_grace(Duration::from_secs(1));
    let (base, _) = start(db.pool.clone(), policy, settings()).await;

    // Log in on a laptop (device label from the User-Agent) and a phone (explicit label).
    let response = http()
        .post(format!("{base}/login"))
        .header("user-agent", "Laptop browser")
        .json(&json!({"email": "Ann@Example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let laptop: Value = response.json().await.unwrap();
    let phone = login(&base, "ann@example.test", Some("Phone app")).await;
    assert_eq!(s(&laptop, "token_type"), "Bearer");
    assert!(s(&laptop, "refresh_token").starts_with("asr2_"));

    let (status, me) = get(&base, "/me", &s(&laptop, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["session_id"], laptop["session_id"]);

    let (status, list) = get(&base, "/sessions", &s(&phone, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], phone["session_id"]);
    assert_eq!(current[0]["device"], "Phone app");
    assert_eq!(current[0]["ip_address"], "127.0.0.1");
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["device"], "Laptop browser");

    // Refresh: a new refresh token and access token; a retry within the grace window gets the
    // same; the old token after the window is reuse: 401 and the session is gone.
    let old = s(&phone, "refresh_token");
    let (status, rotated) = refresh(&base, &old).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = s(&rotated, "refresh_token");
    assert_ne!(new, old);
    let (status, retried) = refresh(&base, &old).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s(&retried, "refresh_token"), new);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, reused) = refresh(&base, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused["error"], "token_reused");
    let (status, _) = get(&base, "/me", &s(&rotated, "access_token")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the reused session is gone"
    );
    let (status, after) = refresh(&base, &new).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(after["error"], "revoked");

    // Revoke one, revoke the others, log out.
    let laptop_access = s(&laptop, "access_token");
    let tablet = login(&base, "ann@example.test", Some("Tablet")).await;
    let response = http()
        .delete(format!("{base}/sessions/{}", s(&tablet, "session_id")))
        .bearer_auth(&laptop_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = get(&base, "/me", &s(&tablet, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = http()
        .delete(format!("{base}/sessions/{}", s(&tablet, "session_id")))
        .bearer_auth(&laptop_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "already revoked");

    let desk = login(&base, "ann@example.test", Some("Desktop")).await;
    let response = http()
        .post(format!("{base}/sessions/revoke-others"))
        .bearer_auth(&laptop_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["revoked"], 1);
    let (status, _) = get(&base, "/me", &s(&desk, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = get(&base, "/sessions", &laptop_access).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);

    let response = http()
        .post(format!("{base}/logout"))
        .bearer_auth(&laptop_access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = get(&base, "/me", &laptop_access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let client = db.client().await;
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM auth.user_sessions WHERE revoked_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 0);
    db.drop().await;
}

#[tokio::test]
async fn browsers_get_the_refresh_token_in_a_strict_cookie() {
    let db = TestDb::new().await;
    db.user("bo@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let response = http()
        .post(format!("{base}/login"))
        .json(&json!({"email": "bo@example.test", "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/refresh"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from the cookie"
        );
    }
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("refresh_token").is_none(),
        "no token in the body of a browser"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();

    // As the service's own page sends it (a request relying on a cookie needs the browser's
    // word that it comes from the service's origin).
    let response = http()
        .post(format!("{base}/refresh"))
        .header("cookie", &pair)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated.split(';').next().unwrap(), pair);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert!(body["access_token"].is_string());
    db.drop().await;
}

/// An unknown e-mail and a wrong password get the same answer after the same work: each runs
/// exactly one argon2id verification, with the same parameters (the dummy hash's are those of
/// the stored hashes). Counted, not timed; the benchmark compares the times.
#[tokio::test]
async fn unknown_email_and_wrong_password_answer_alike_in_the_same_time() {
    let db = TestDb::new().await;
    db.user("cy@example.test").await;
    let (base, state) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let attempt = |email: &'static str, password: &'static str| {
        let base = base.clone();
        let state = state.clone();
        async move {
            let before = state.passwords.verifications();
            let response = http()
                .post(format!("{base}/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body, state.passwords.verifications() - before)
        }
    };
    let (status_u, body_u, runs_u) = attempt("nobody@example.test", "whatever").await;
    let (status_w, body_w, runs_w) = attempt("cy@example.test", "wrong password").await;
    assert_eq!(status_u, StatusCode::UNAUTHORIZED);
    assert_eq!((status_u, &body_u), (status_w, &body_w));
    assert_eq!((runs_u, runs_w), (1, 1), "one argon2id verification each");
    // The same parameters: the dummy hash's, the service's and the stored hash's.
    let stored: String = db
        .client()
        .await
        .query_one("SELECT password_hash FROM auth.user_credentials", &[])
        .await
        .unwrap()
        .get(0);
    let stored = argon2::Params::try_from(&argon2::PasswordHash::new(&stored).unwrap()).unwrap();
    let dummy = state.passwords.dummy_params().unwrap();
    let params = state.passwords.params();
    for (name, a, b) in [
        ("m", dummy.m_cost(), stored.m_cost()),
        ("t", dummy.t_cost(), stored.t_cost()),
        ("p", dummy.p_cost(), stored.p_cost()),
        ("m in use", params.m_cost(), stored.m_cost()),
    ] {
        assert_eq!(a, b, "{name} differs");
    }
    db.drop().await;
}

#[tokio::test]
async fn failed_logins_beyond_the_network_quota_are_throttled_and_counted() {
    let db = TestDb::new().await;
    db.user("di@example.test").await;
    let mut tight = settings();
    tight.login_per_minute = std::num::NonZeroU32::new(1).unwrap();
    tight.login_burst = std::num::NonZeroU32::new(2).unwrap();
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), tight).await;
    let body = json!({"email": "di@example.test", "password": "wrong password"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = http()
            .post(format!("{base}/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let metrics_addr = auth_service::routes::spawn_metrics_on_loopback()
        .await
        .unwrap();
    let metrics = http()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auth_service_rate_limited_total"),
        "{metrics}"
    );
    assert!(metrics.contains("auth_service_requests_total"));
    db.drop().await;
}

#[tokio::test]
async fn metrics_show_the_crates_counters_and_the_services() {
    let db = TestDb::new().await;
    db.user("ed@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let session = login(&base, "ed@example.test", None).await;
    refresh(&base, &s(&session, "refresh_token")).await;
    http()
        .post(format!("{base}/login"))
        .json(&json!({"email": "ed@example.test", "password": "nope"}))
        .send()
        .await
        .unwrap();
    let metrics_addr = auth_service::routes::spawn_metrics_on_loopback()
        .await
        .unwrap();
    let response = http()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for name in [
        "auth_sessions_rotations_total{outcome=\"rotated\"}",
        "auth_service_login_failures_total{reason=\"invalid_credentials\"}",
        "auth_service_logins_total",
        "auth_service_requests_total{method=\"POST\",route=\"/login\",status=\"200\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(!text.contains(&s(&session, "refresh_token")));
    db.drop().await;
}

/// Every endpoint, bad input: 4xx, a JSON message, and the database unchanged.
#[tokio::test]
async fn bad_input_on_every_endpoint_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    db.user("fa@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let session = login(&base, "fa@example.test", Some("Only device")).await;
    let access = s(&session, "access_token");
    let token = s(&session, "refresh_token");
    let before = db.snapshot().await;

    let long = "x".repeat(300);
    let huge = "y".repeat(20_000);
    let garbage_token = format!("asr2_{}", "A".repeat(120));
    let mut flipped = token.clone().into_bytes();
    flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let json_cases: Vec<(&str, String)> = vec![
        ("/login", "{".into()),
        ("/login", "[]".into()),
        ("/login", "{\"email\": 5, \"password\": \"p\"}".into()),
        ("/login", "{\"email\": \"fa@example.test\"}".into()),
        (
            "/login",
            json!({"email": "fa@example.test", "password": PASSWORD, "extra": 1}).to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test\u{0}", "password": PASSWORD}).to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test", "password": "pass\u{0}word"}).to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test", "password": PASSWORD, "device": "a\u{0}b"})
                .to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test", "password": PASSWORD, "device": long}).to_string(),
        ),
        (
            "/login",
            json!({"email": format!("{long}@example.test"), "password": PASSWORD}).to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test", "password": "p".repeat(2000)}).to_string(),
        ),
        (
            "/login",
            json!({"email": "not-an-address", "password": PASSWORD}).to_string(),
        ),
        (
            "/login",
            json!({"email": huge, "password": PASSWORD}).to_string(),
        ),
        (
            "/login",
            json!({"email": "fa@example.test", "password": "wrong"}).to_string(),
        ),
        ("/refresh", "{".into()),
        ("/refresh", "{}".into()),
        ("/refresh", json!({"refresh_token": 7}).to_string()),
        ("/refresh", json!({"refresh_token": "garbage"}).to_string()),
        (
            "/refresh",
            json!({"refresh_token": garbage_token}).to_string(),
        ),
        ("/refresh", json!({"refresh_token": flipped}).to_string()),
        (
            "/refresh",
            json!({"refresh_token": format!("{token}\u{0}")}).to_string(),
        ),
        ("/refresh", json!({"refresh_token": huge}).to_string()),
    ];
    for (path, body) in &json_cases {
        let response = http()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        check(
            response,
            &format!("POST {path} {}", &body[..body.len().min(80)]),
        )
        .await;
    }
    // Not JSON at all.
    for path in ["/login", "/refresh"] {
        let response = http()
            .post(format!("{base}{path}"))
            .header("content-type", "text/plain")
            .body("email=x")
            .send()
            .await
            .unwrap();
        check(response, &format!("POST {path} as text")).await;
    }
    // Authorised endpoints: no token, garbage, a forged signature, bad ids.
    let forged = {
        let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".repeat(10);
        parts.join(".")
    };
    for bearer in [
        None,
        Some("garbage"),
        Some(forged.as_str()),
        Some(&huge[..5000]),
    ] {
        for (method, path) in [
            ("GET", "/me".to_owned()),
            ("GET", "/sessions".to_owned()),
            ("POST", "/logout".to_owned()),
            ("POST", "/sessions/revoke-others".to_owned()),
            ("DELETE", format!("/sessions/{}", s(&session, "session_id"))),
        ] {
            let mut request = http().request(method.parse().unwrap(), format!("{base}{path}"));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            check(request.send().await.unwrap(), &format!("{method} {path}")).await;
        }
    }
    for id in [
        "not-a-uuid",
        "%00",
        &long,
        "00000000-0000-0000-0000-000000000000",
    ] {
        let response = http()
            .delete(format!("{base}/sessions/{id}"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        check(
            response,
            &format!("DELETE /sessions/{}", &id[..id.len().min(40)]),
        )
        .await;
    }
    let response = http().get(format!("{base}/nowhere")).send().await.unwrap();
    check(response, "GET /nowhere").await;
    let response = http().put(format!("{base}/login")).send().await.unwrap();
    check(response, "PUT /login").await;

    assert_eq!(
        db.snapshot().await,
        before,
        "a refused request changed the database"
    );
    // And the session still works.
    let (status, _) = get(&base, "/me", &access).await;
    assert_eq!(status, StatusCode::OK);
    db.drop().await;
}

async fn check(response: reqwest::Response, what: &str) {
    let status = response.status();
    assert!(status.is_client_error(), "{what}: {status}");
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|err| panic!("{what}: the body is not JSON ({err})"));
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message in {body}"));
    assert!(!message.is_empty());
    assert!(body["error"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn the_client_address_comes_from_the_trusted_proxy_header_when_configured() {
    let db = TestDb::new().await;
    db.user("lu@example.test").await;
    let mut proxied = settings();
    proxied.trusted_proxy_header = Some("x-forwarded-for".parse().unwrap());
    proxied.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), proxied).await;
    let response = http()
        .post(format!("{base}/login"))
        .header("x-forwarded-for", "10.1.2.3, 203.0.113.9")
        .json(&json!({"email": "lu@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let session: Value = response.json().await.unwrap();
    assert_eq!(db.stored_address().await, "203.0.113.9");
    // Activity from another address (the header's last entry) moves the session's address.
    let list: Value = http()
        .get(format!("{base}/sessions"))
        .bearer_auth(s(&session, "access_token"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"][0]["ip_address"], "198.51.100.7");
    // Without the setting, the header is ignored: the socket's address.
    let (plain, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let response = http()
        .post(format!("{plain}/login"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"email": "lu@example.test", "password": PASSWORD, "device": "direct"}))
        .send()
        .await
        .unwrap();
    let direct: Value = response.json().await.unwrap();
    let (_, list) = get(&plain, "/sessions", &s(&direct, "access_token")).await;
    let mine = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|session| session["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(mine["ip_address"], "127.0.0.1");
    db.drop().await;
}

#[tokio::test]
async fn page_forms_refuse_cross_site_requests_and_requests_without_cookies() {
    let db = TestDb::new().await;
    db.user("mo@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let victim = login(&base, "mo@example.test", Some("Phone")).await;
    let browser = http()
        .post(format!("{base}/devices/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", "mo@example.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = browser
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let access_cookie = cookies
        .iter()
        .find(|c| c.starts_with("access_token="))
        .unwrap();
    let before = db.snapshot().await;
    // What a forged cross-site form post looks like to a browser that still sends the cookie
    // (SameSite=Strict means it would not): refused.
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", access_cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    // Without the cookie (what SameSite=Strict makes of a cross-site post): not signed in.
    let response = http()
        .post(format!(
            "{base}/devices/{}/revoke",
            s(&victim, "session_id")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/refresh/page");
    assert_eq!(db.snapshot().await, before);
    // Same-site, with the cookie: done.
    let response = http()
        .post(format!("{base}/devices/revoke-others"))
        .header("cookie", access_cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (status, _) = get(&base, "/me", &s(&victim, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    db.drop().await;
}

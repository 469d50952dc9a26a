//! The devices page over HTTP, as a browser without scripts would use it: devices named in
//! words, the current one first, confirmation before signing this browser out, feedback after
//! signing others out, ways back from errors, a cookieless link from another site, a page login
//! that replaces the browser's old session, eviction at the cap told, "sign out everywhere",
//! and the session limits as `serve` settings.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use auth_sessions::{CapPolicy, SessionPolicy};
use common::{PASSWORD, TestDb, http, settings, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const LINUX_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// A cookie-keeping browser without scripts: sends each cookie to the paths it is scoped to,
/// follows nothing by itself.
struct Browser {
    base: String,
    user_agent: &'static str,
    /// name -> (value, path)
    cookies: BTreeMap<String, (String, String)>,
}

impl Browser {
    fn new(base: &str, user_agent: &'static str) -> Self {
        Self {
            base: base.to_owned(),
            user_agent,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self, path: &str) -> String {
        self.cookies
            .iter()
            .filter(|(_, (_, scope))| path.starts_with(scope.as_str()))
            .map(|(name, (value, _))| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = "/".to_owned();
            let mut gone = value.is_empty();
            for attribute in parts {
                if let Some(p) = attribute.strip_prefix("Path=") {
                    path = p.to_owned();
                }
                if attribute.eq_ignore_ascii_case("Max-Age=0") {
                    gone = true;
                }
            }
            if gone {
                self.cookies.remove(name);
            } else {
                self.cookies
                    .insert(name.to_owned(), (value.to_owned(), path));
            }
        }
    }

    async fn send(&mut self, builder: reqwest::RequestBuilder, path: &str) -> reqwest::Response {
        let cookies = self.cookie_header(path.split('?').next().unwrap());
        let mut builder = builder
            .header("user-agent", self.user_agent)
            .header("sec-fetch-site", "same-origin");
        if !cookies.is_empty() {
            builder = builder.header("cookie", cookies);
        }
        let response = builder.send().await.unwrap();
        self.keep(&response);
        response
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let request = http().get(format!("{}{path}", self.base));
        self.send(request, path).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let request = http().post(format!("{}{path}", self.base)).form(form);
        self.send(request, path).await
    }

    /// Follows redirects (as a browser does, sending the cookies each path gets) to a page:
    /// its final path and its text.
    async fn follow(&mut self, mut response: reqwest::Response) -> (StatusCode, String, String) {
        let mut path = response.url().path().to_owned();
        for _ in 0..10 {
            if !response.status().is_redirection() {
                let status = response.status();
                return (status, path, response.text().await.unwrap());
            }
            path = response.headers()["location"].to_str().unwrap().to_owned();
            response = self.get(&path).await;
        }
        panic!("more than 10 redirects");
    }

    async fn sign_in(&mut self, email: &str) -> String {
        let response = self
            .post(
                "/devices/login",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        let (status, path, page) = self.follow(response).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(path.starts_with("/devices"), "{path}");
        page
    }
}

async fn api_login(base: &str, email: &str, device: &str) -> Value {
    let response = http()
        .post(format!("{base}/login"))
        .json(&json!({"email": email, "password": PASSWORD, "device": device}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The text of every element `<tag class="class"...>...</tag>` of `page`, in order.
fn cells(page: &str, tag: &str, class: &str) -> Vec<String> {
    let open = format!("<{tag} class=\"{class}\"");
    let close = format!("</{tag}>");
    page.match_indices(&open)
        .map(|(at, _)| {
            let rest = &page[at..];
            let start = rest.find('>').unwrap() + 1;
            let end = rest.find(&close).unwrap();
            rest[start..end].to_owned()
        })
        .collect()
}

/// The rows of the device list, in order: their opening tags and contents.
fn rows(page: &str) -> Vec<String> {
    page.match_indices("<tr class=\"device")
        .map(|(at, _)| {
            let rest = &page[at..];
            rest[..rest.find("</tr>").unwrap()].to_owned()
        })
        .collect()
}

async fn live(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM auth.user_sessions WHERE revoked_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn devices_are_named_in_words_with_the_raw_user_agent_out_of_the_main_column() {
    let db = TestDb::new().await;
    db.user("ida@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut laptop = Browser::new(&base, LINUX_CHROME);
    laptop.sign_in("ida@example.test").await;
    let mut phone = Browser::new(&base, IPHONE_SAFARI);
    let page = phone.sign_in("ida@example.test").await;
    let labels = cells(&page, "td", "label");
    assert_eq!(labels.len(), 2, "{page}");
    assert!(
        labels.iter().any(|l| l.contains("Safari on iPhone")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.contains("Chrome on Linux")),
        "{labels:?}"
    );
    for label in &labels {
        assert!(!label.contains("Mozilla"), "raw User-Agent shown: {label}");
    }
    // The JSON API names them alike.
    let token = api_login(&base, "ida@example.test", "Phone app").await;
    let response = http()
        .get(format!("{base}/sessions"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["device"].as_str())
        .collect();
    assert!(names.contains(&"Phone app"), "{names:?}");
    assert!(names.contains(&"Chrome on Linux"), "{names:?}");
    db.drop().await;
}

#[tokio::test]
async fn two_sign_ins_from_one_client_differ_by_sign_in_time_and_address_and_this_one_comes_first()
{
    let db = TestDb::new().await;
    db.user("al@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut first = Browser::new(&base, LINUX_CHROME);
    first.sign_in("al@example.test").await;
    let mut second = Browser::new(&base, LINUX_CHROME);
    second.sign_in("al@example.test").await;
    // The second sign-in is the more recent one; the first browser still sees itself first.
    let response = first.get("/devices").await;
    let (_, _, page) = first.follow(response).await;
    let rows = rows(&page);
    assert_eq!(rows.len(), 2, "{page}");
    assert!(
        rows[0].starts_with("<tr class=\"device current\""),
        "this device first: {rows:?}"
    );
    assert_eq!(
        cells(&page, "td", "signed-in").len(),
        2,
        "a signed-in time per row: {page}"
    );
    assert_eq!(
        cells(&page, "td", "address").len(),
        2,
        "an address per row: {page}"
    );
    assert!(page.contains("Signed in"), "a Signed in heading: {page}");
    db.drop().await;
}

#[tokio::test]
async fn signing_this_device_out_asks_for_confirmation_first() {
    let db = TestDb::new().await;
    db.user("cy@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    browser.sign_in("cy@example.test").await;
    // A bare post (the button of today's row) does not sign out: it asks.
    let response = browser.post("/devices/logout", &[]).await;
    let (status, _, page) = browser.follow(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live(&db).await, 1, "signed out without confirmation");
    assert!(
        page.contains("name=\"confirm\""),
        "a confirmation form: {page}"
    );
    assert!(page.contains("href=\"/devices\""), "a way back: {page}");
    // The confirmation page by GET, as the row links to it.
    let response = browser.get("/devices/logout").await;
    let (status, _, page) = browser.follow(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("name=\"confirm\""), "{page}");
    // Confirmed: signed out.
    let response = browser.post("/devices/logout", &[("confirm", "yes")]).await;
    let (status, path, _) = browser.follow(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(path.starts_with("/devices/login"), "{path}");
    assert_eq!(live(&db).await, 0);
    db.drop().await;
}

#[tokio::test]
async fn signing_out_all_other_devices_says_how_many() {
    let db = TestDb::new().await;
    db.user("di@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    api_login(&base, "di@example.test", "Phone app").await;
    api_login(&base, "di@example.test", "Tablet app").await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    browser.sign_in("di@example.test").await;
    let response = browser.post("/devices/revoke-others", &[]).await;
    let (status, _, page) = browser.follow(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("2 devices signed out"), "{page}");
    assert_eq!(live(&db).await, 1);
    db.drop().await;
}

#[tokio::test]
async fn error_pages_have_a_way_back_and_a_wrong_password_keeps_the_email() {
    let db = TestDb::new().await;
    db.user("ed@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    let response = browser
        .post(
            "/devices/login",
            &[
                ("email", "ed@example.test"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("value=\"ed@example.test\""),
        "the e-mail address is kept: {page}"
    );
    browser.sign_in("ed@example.test").await;
    let response = browser.post("/devices/not-a-uuid/revoke", &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("href=\"/devices\""), "a way back: {page}");
    db.drop().await;
}

#[tokio::test]
async fn a_cross_site_link_without_cookies_renavigates_same_origin_once() {
    let db = TestDb::new().await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    // What a browser sends for a link from another site: no SameSite=Strict cookie.
    let response = http()
        .get(format!("{base}/devices"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "not a redirect to sign in"
    );
    let page = response.text().await.unwrap();
    let refresh = page
        .find("http-equiv=\"refresh\"")
        .map(|at| &page[at..])
        .unwrap_or_else(|| panic!("a same-origin re-navigation: {page}"));
    let target = refresh
        .split("url=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(target.starts_with("/devices"), "same origin: {target}");
    // The re-navigation, should it again come without cookies and cross-site, goes on to the
    // sign-in detour instead of bouncing again: no loop.
    let response = http()
        .get(format!("{base}{target}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/refresh/page");
    db.drop().await;
}

#[tokio::test]
async fn a_page_login_replaces_the_session_the_browser_still_holds() {
    let db = TestDb::new().await;
    db.user("fa@example.test").await;
    db.user("gu@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    browser.sign_in("fa@example.test").await;
    assert_eq!(live(&db).await, 1);
    // The access cookie has expired; the browser signs in again from the form.
    browser.cookies.remove("access_token");
    browser.sign_in("fa@example.test").await;
    assert_eq!(live(&db).await, 1, "the old session was replaced");
    // Another user signing in on this browser leaves the first user's session alone.
    browser.sign_in("gu@example.test").await;
    assert_eq!(live(&db).await, 2);
    db.drop().await;
}

#[tokio::test]
async fn the_page_tells_when_a_sign_in_pushed_an_old_device_out_and_shows_the_limits() {
    let db = TestDb::new().await;
    db.user("ha@example.test").await;
    let policy = SessionPolicy::default()
        .max_sessions_per_user(Some(2), CapPolicy::EvictLeastRecentlyActive)
        .idle_timeout(Some(Duration::from_secs(3 * 24 * 3600)));
    let (base, _) = start(db.pool.clone(), policy, settings()).await;
    api_login(&base, "ha@example.test", "Old phone").await;
    api_login(&base, "ha@example.test", "Tablet app").await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    let page = browser.sign_in("ha@example.test").await;
    assert!(page.contains("id=\"evicted\""), "eviction told: {page}");
    assert!(
        page.contains("Old phone"),
        "the evicted device named: {page}"
    );
    assert!(page.contains("at most 2"), "the cap shown: {page}");
    assert!(page.contains("3 days"), "the idle timeout shown: {page}");
    // Reloaded: the notice is gone, the limits stay.
    let response = browser.get("/devices").await;
    let (_, _, page) = browser.follow(response).await;
    assert!(!page.contains("id=\"evicted\""), "{page}");
    assert!(page.contains("at most 2"), "{page}");
    db.drop().await;
}

#[tokio::test]
async fn sign_out_everywhere_over_the_api_and_the_page() {
    let db = TestDb::new().await;
    db.user("io@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let phone = api_login(&base, "io@example.test", "Phone app").await;
    api_login(&base, "io@example.test", "Tablet app").await;
    let response = http()
        .post(format!("{base}/sessions/revoke-all"))
        .bearer_auth(phone["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["revoked"], 2);
    assert_eq!(live(&db).await, 0);

    api_login(&base, "io@example.test", "Phone app").await;
    let mut browser = Browser::new(&base, LINUX_CHROME);
    let page = browser.sign_in("io@example.test").await;
    assert!(
        page.contains("action=\"/devices/revoke-all\"")
            || page.contains("href=\"/devices/revoke-all\""),
        "{page}"
    );
    // Asked first, then done.
    let response = browser.post("/devices/revoke-all", &[]).await;
    let (_, _, page) = browser.follow(response).await;
    assert!(page.contains("name=\"confirm\""), "{page}");
    assert_eq!(live(&db).await, 2);
    let response = browser
        .post("/devices/revoke-all", &[("confirm", "yes")])
        .await;
    let (status, path, page) = browser.follow(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(path.starts_with("/devices/login"), "{path}");
    assert!(page.contains("2 devices signed out"), "{page}");
    assert_eq!(live(&db).await, 0);
    db.drop().await;
}

#[test]
fn serve_help_lists_the_session_cap_idle_timeout_and_grace() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["serve", "--help"])
        .output()
        .expect("run auth-service serve --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--max-sessions-per-user",
        "--idle-timeout-secs",
        "--rotation-grace-secs",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from serve --help:\n{help}"
        );
    }
    assert!(help.contains("[default: 10]"), "{help}");
}

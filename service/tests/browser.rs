//! The devices page in a real headless browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) with fantoccini. A missing browser or driver is a failure, never
//! a skip: install them with `apt-get install chromium chromium-driver`.
//!
//! Three sessions: a desktop window 1280 px wide, a phone 390 px wide (Chrome's device
//! emulation), and a link followed from another site (a page on `127.0.0.2`). They run one at a
//! time (one browser is enough load for a small machine). Screenshots go to
//! `target/screenshots/`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth_sessions::{CapPolicy, SessionPolicy};
use common::{PASSWORD, TestDb, http, settings, start};
use fantoccini::error::CmdError;
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().find_map(|name| {
        let path = Path::new(name);
        if path.is_absolute() {
            return path.exists().then(|| path.to_path_buf());
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.exists())
        })
    })
}

/// chromedriver on a free port of loopback, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let driver = find(&["chromedriver", "/usr/bin/chromedriver"]).expect(
            "chromedriver is not installed: the browser test needs Debian's chromium and \
             chromium-driver (apt-get install -y chromium chromium-driver); it does not skip",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LINUX_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// A WebDriver session with headless chromium: a desktop window `width` wide, or a phone
/// `width` CSS pixels wide (Chrome's device emulation: viewport, pixel ratio, touch).
async fn browser_session(
    driver: &Driver,
    width: u32,
    phone: bool,
    user_agent: &str,
) -> fantoccini::Client {
    let browser = find(&["chromium", "/usr/bin/chromium"]).expect(
        "chromium is not installed: the browser test needs Debian's chromium and \
         chromium-driver (apt-get install -y chromium chromium-driver); it does not skip",
    );
    let mut options = json!({
        "binary": browser,
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", format!("--window-size={width},900"),
                 format!("--user-agent={user_agent}")],
    });
    if phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {"width": width, "height": 844, "pixelRatio": 3.0, "touch": true},
            "userAgent": user_agent,
        });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with chromium")
}

async fn sign_in(client: &fantoccini::Client, base: &str, email: &str) -> Result<(), CmdError> {
    client.goto(&format!("{base}/devices")).await?;
    client.wait().for_element(Locator::Id("login")).await?;
    assert!(
        client
            .current_url()
            .await?
            .path()
            .ends_with("/devices/login")
    );
    client
        .find(Locator::Id("email"))
        .await?
        .send_keys(email)
        .await?;
    client
        .find(Locator::Id("password"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    client.find(Locator::Id("sign-in")).await?.click().await?;
    client.wait().for_element(Locator::Id("devices")).await?;
    Ok(())
}

async fn api_login(base: &str, email: &str, device: &str) -> serde_json::Value {
    let response = http()
        .post(format!("{base}/login"))
        .json(&json!({"email": email, "password": PASSWORD, "device": device}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// `document.documentElement`'s scroll width and client width.
async fn widths(client: &fantoccini::Client) -> Result<(u64, u64), CmdError> {
    let value = client
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
            vec![],
        )
        .await?;
    Ok((
        value[0].as_u64().unwrap_or(0),
        value[1].as_u64().unwrap_or(0),
    ))
}

/// Runs `steps` with a browser session, saving `failure` as a screenshot if they fail.
/// One browser at a time.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run<F, Fut>(client: fantoccini::Client, failure: &str, steps: F)
where
    F: FnOnce(fantoccini::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), CmdError>>,
{
    let result = steps(client.clone()).await;
    if result.is_err() {
        save_screenshot(&client, failure).await;
    }
    let _ = client.close().await;
    result.expect("browser steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_page_in_a_headless_browser() {
    let _one = ONE_BROWSER.lock().await;
    let db = TestDb::new().await;
    db.user("jo@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let driver = Driver::start();
    let client = browser_session(&driver, 1280, false, LINUX_CHROME).await;
    run(client, "desktop-failure.png", |client| async move {
        // Not signed in: the page sends the browser to the login form.
        sign_in(&client, &base, "jo@example.test").await?;
        let rows = client.find_all(Locator::Css("tr.device")).await?;
        assert_eq!(rows.len(), 1, "one device after the browser's login");
        let current = client
            .find(Locator::Css("tr.device.current td.label"))
            .await?
            .text()
            .await?;
        assert!(
            current.contains("Chrome on Linux"),
            "named in words: {current}"
        );
        assert!(!current.contains("Mozilla"), "{current}");
        assert!(current.contains("this device"));

        // The access cookie is gone (expired): the page goes through /refresh/page, where the
        // browser sends the refresh cookie (path /refresh), and comes back signed in.
        client.delete_cookie("access_token").await?;
        client.goto(&format!("{base}/devices")).await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        assert!(client.current_url().await?.path().ends_with("/devices"));
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 1);

        // A second device logs in over the JSON API and is the more recently active one; this
        // browser's row still comes first.
        let phone = api_login(&base, "jo@example.test", "Phone app").await;
        client.refresh().await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        let rows = client.find_all(Locator::Css("tr.device")).await?;
        assert_eq!(rows.len(), 2, "two devices after the second login");
        let first = client
            .find(Locator::Css("tr.device:first-child"))
            .await?
            .attr("class")
            .await?
            .unwrap_or_default();
        assert!(first.contains("current"), "this device first: {first}");
        let other = client
            .find(Locator::Css("tr.device:not(.current) td.label"))
            .await?
            .text()
            .await?;
        assert_eq!(other.trim(), "Phone app");
        let (scroll, width) = widths(&client).await?;
        assert!(
            scroll <= width,
            "no horizontal scroll at 1280: {scroll} > {width}"
        );
        save_screenshot(&client, "desktop-1280-devices.png").await;

        // Sign the phone out from the page.
        client
            .find(Locator::Css("tr.device:not(.current) button.sign-out"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        let rows = client.find_all(Locator::Css("tr.device")).await?;
        assert_eq!(rows.len(), 1, "one device after signing the other out");
        assert!(client.find(Locator::Css("tr.device.current")).await.is_ok());

        // The phone is refused from now on.
        let status = http()
            .get(format!("{base}/me"))
            .bearer_auth(phone["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);

        // The cookies the browser holds are HttpOnly: page scripts cannot read them.
        let visible = client.execute("return document.cookie", vec![]).await?;
        assert_eq!(visible, json!(""));

        // "Sign out" on this device's row asks first; "Cancel" goes back, still signed in.
        client
            .find(Locator::Css("tr.device.current .sign-out"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("confirm")).await?;
        save_screenshot(&client, "desktop-1280-confirm.png").await;
        client.find(Locator::Id("cancel")).await?.click().await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 1);
        // Confirmed: signed out, on the sign-in form.
        client
            .find(Locator::Css("tr.device.current .sign-out"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("confirm")).await?;
        client.find(Locator::Id("confirm")).await?.click().await?;
        client.wait().for_element(Locator::Id("login")).await?;
        Ok(())
    })
    .await;
    drop(driver);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_devices_page_at_390_px_stacks_without_horizontal_scroll() {
    let _one = ONE_BROWSER.lock().await;
    let db = TestDb::new().await;
    db.user("kim.with.a.rather.long.address@example.test").await;
    // A cap of 3, so that this phone's sign-in pushes the oldest device out and says so.
    let policy = SessionPolicy::default().max_sessions_per_user(Some(3), CapPolicy::default());
    let (base, _) = start(db.pool.clone(), policy, settings()).await;
    let driver = Driver::start();
    let client = browser_session(&driver, 390, true, IPHONE_SAFARI).await;
    let email = "kim.with.a.rather.long.address@example.test";
    run(client, "mobile-390-failure.png", |client| async move {
        let (scroll, width) = {
            client.goto(&format!("{base}/devices/login")).await?;
            widths(&client).await?
        };
        assert_eq!(width, 390, "the viewport is a phone's");
        assert!(
            scroll <= width,
            "the sign-in form scrolls sideways: {scroll}"
        );
        api_login(
            &base,
            email,
            "Old laptop app with a long, descriptive device name",
        )
        .await;
        api_login(
            &base,
            email,
            "Work laptop app, the long-named one with more words",
        )
        .await;
        api_login(&base, email, "Tablet").await;
        sign_in(&client, &base, email).await?;
        let evicted = client.find(Locator::Id("evicted")).await?.text().await?;
        assert!(
            evicted.contains("Old laptop app"),
            "eviction told: {evicted}"
        );
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 3);
        let (scroll, width) = widths(&client).await?;
        save_screenshot(&client, "mobile-390-devices.png").await;
        assert!(
            scroll <= width,
            "horizontal scroll at 390 px: scrollWidth {scroll} > clientWidth {width}"
        );
        let first = client
            .find(Locator::Css("tr.device:first-child td.label"))
            .await?
            .text()
            .await?;
        assert!(
            first.contains("Safari on iPhone"),
            "named in words, first: {first}"
        );
        // Every sign-out button is within the viewport.
        for button in client.find_all(Locator::Css("button, a.button")).await? {
            let (x, _, w, _) = button.rectangle().await?;
            assert!(
                x >= 0.0 && x + w <= f64::from(width as u32),
                "a button off screen"
            );
        }
        // Signing this phone out asks first, and the question fits too.
        client
            .find(Locator::Css("tr.device.current .sign-out"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("confirm")).await?;
        let (scroll, width) = widths(&client).await?;
        save_screenshot(&client, "mobile-390-confirm.png").await;
        assert!(scroll <= width, "the confirmation scrolls sideways");
        client.find(Locator::Id("cancel")).await?.click().await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        // No cell's text overflows its box (a word cut off at the edge).
        let clipped = client
            .execute(
                "return [...document.querySelectorAll('td, p, h1')]\
                 .filter(e => e.scrollWidth > e.clientWidth + 1).length",
                vec![],
            )
            .await?;
        assert_eq!(clipped, json!(0), "text overflowing its box at 390 px");
        // Signing the others out says how many, on a page that fits.
        client
            .find(Locator::Id("revoke-others"))
            .await?
            .click()
            .await?;
        client.wait().for_element(Locator::Id("notice")).await?;
        let notice = client.find(Locator::Id("notice")).await?.text().await?;
        assert!(notice.contains("2 devices signed out"), "{notice}");
        let (scroll, width) = widths(&client).await?;
        save_screenshot(&client, "mobile-390-signed-out-others.png").await;
        assert!(scroll <= width, "the notice scrolls sideways");
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 1);
        Ok(())
    })
    .await;
    drop(driver);
    db.drop().await;
}

/// A page of "another site" (`127.0.0.2`, another site than `127.0.0.1` for cookies) with one
/// link to `target`.
async fn other_site(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2 (another loopback address)");
    let addr = listener.local_addr().unwrap();
    let page = format!(
        "<!doctype html><html><body><p>Mail from the service:</p>\
         <a id=\"go\" href=\"{target}\">See your devices</a></body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_link_to_devices_keeps_the_user_signed_in() {
    let _one = ONE_BROWSER.lock().await;
    let db = TestDb::new().await;
    db.user("lu@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let driver = Driver::start();
    let client = browser_session(&driver, 1280, false, LINUX_CHROME).await;
    let mail = other_site(format!("{base}/devices")).await;
    let client_db = db.client().await;
    run(client, "cross-site-failure.png", |client| async move {
        sign_in(&client, &base, "lu@example.test").await?;
        client.goto(&mail).await?;
        client.find(Locator::Id("go")).await?.click().await?;
        // Lands on the list, signed in: the same-origin re-navigation carried the Strict
        // cookies the cross-site one could not.
        client
            .wait()
            .for_element(Locator::Css("#devices, #login"))
            .await?;
        save_screenshot(&client, "cross-site-landing.png").await;
        let url = client.current_url().await?;
        assert_eq!(url.path(), "/devices", "{url}");
        assert!(
            client.find(Locator::Id("devices")).await.is_ok(),
            "signed in after the link"
        );
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 1);
        let live: i64 = client_db
            .query_one(
                "SELECT count(*) FROM auth.user_sessions WHERE revoked_at IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(live, 1, "no new session");
        Ok(())
    })
    .await;
    drop(driver);
    db.drop().await;
}

async fn save_screenshot(client: &fantoccini::Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).unwrap();
    eprintln!("screenshot: target/screenshots/{name}");
}

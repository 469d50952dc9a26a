//! The devices page in a real headless browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) with fantoccini. A missing browser or driver is a failure, never
//! a skip: install them with `apt-get install chromium chromium-driver`.
//!
//! Saves a screenshot to `target/screenshots/devices.png`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth_sessions::SessionPolicy;
use common::{PASSWORD, TestDb, http, settings, start};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_page_in_a_headless_browser() {
    let browser = find(&["chromium", "/usr/bin/chromium"]).expect(
        "chromium is not installed: the browser test needs Debian's chromium and \
         chromium-driver (apt-get install -y chromium chromium-driver); it does not skip",
    );
    let db = TestDb::new().await;
    db.user("jo@example.test").await;
    let (base, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let driver = Driver::start();

    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1000,700",
                     "--user-agent=Headless Chromium (test)"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with chromium");

    let result = async {
        // Not signed in: the page sends the browser to the login form.
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
            .send_keys("jo@example.test")
            .await?;
        client
            .find(Locator::Id("password"))
            .await?
            .send_keys(PASSWORD)
            .await?;
        client.find(Locator::Id("sign-in")).await?.click().await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        let rows = client.find_all(Locator::Css("tr.device")).await?;
        assert_eq!(rows.len(), 1, "one device after the browser's login");
        let current = client
            .find(Locator::Css("tr.device.current td.label"))
            .await?
            .text()
            .await?;
        assert!(current.contains("Headless Chromium (test)"), "{current}");
        assert!(current.contains("this device"));

        // The access cookie is gone (expired): the page goes through /refresh/page, where the
        // browser sends the refresh cookie (path /refresh), and comes back signed in.
        client.delete_cookie("access_token").await?;
        client.goto(&format!("{base}/devices")).await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        assert!(client.current_url().await?.path().ends_with("/devices"));
        assert_eq!(client.find_all(Locator::Css("tr.device")).await?.len(), 1);

        // A second device logs in over the JSON API.
        let response = http()
            .post(format!("{base}/login"))
            .json(&json!({"email": "jo@example.test", "password": PASSWORD, "device": "Phone app"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let phone: serde_json::Value = response.json().await.unwrap();
        client.refresh().await?;
        client.wait().for_element(Locator::Id("devices")).await?;
        let rows = client.find_all(Locator::Css("tr.device")).await?;
        assert_eq!(rows.len(), 2, "two devices after the second login");
        let other = client
            .find(Locator::Css("tr.device:not(.current) td.label"))
            .await?
            .text()
            .await?;
        assert_eq!(other.trim(), "Phone app");
        save_screenshot(&client, "devices-two.png").await;

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
        save_screenshot(&client, "devices.png").await;

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
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    if result.is_err() {
        save_screenshot(&client, "devices-failure.png").await;
    }
    let _ = client.close().await;
    result.expect("browser steps");
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

//! The live dashboard in a real browser: headless Chromium, driven over
//! WebDriver by chromedriver, watches a truck's tile turn red when its
//! reading breaches a critical threshold, and back when it resolves.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them) and mosquitto.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::broker::{Floe, Mosquitto, free_port, wait_for};
use support::write;

const TOPIC: &str = "fleet/truck-7/telemetry";

fn pipeline(broker: &str) -> String {
    format!(
        r#"
name: fleet
sources:
  trucks:
    type: mqtt
    url: {broker}
    topics: ["fleet/+/telemetry"]
    key: device
operators:
  too_warm:
    type: threshold
    inputs: [trucks]
    field: temperature_c
    above: 8.0
    severity: critical
sinks:
  alerts:
    type: file
    inputs: [too_warm]
    path: alerts.jsonl
"#
    )
}

fn reading(temperature: f64) -> Vec<String> {
    vec![format!(
        r#"{{"device":"truck-7","temperature_c":{temperature}}}"#
    )]
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(dir: &Path) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromedriver.log")).unwrap())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let up = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not listen on {port}");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// The class of truck-7's tile, once the page has it.
async fn tile_class(browser: &Client) -> Option<String> {
    let tile = browser
        .find(Locator::Css(r#"[data-key="truck-7"]"#))
        .await
        .ok()?;
    tile.attr("class").await.ok().flatten()
}

/// Polls the tile until its class has `level`, or `limit` passes.
async fn wait_for_level(browser: &Client, level: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tile_class(browser).await.is_some_and(|c| c.contains(level)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaching_trucks_tile_turns_red_within_a_second_and_back_after_the_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    write(dir.path(), "p.yaml", pipeline(&broker.url()));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml", "--http", &addr]);
    let url = format!("http://{addr}/ready");
    let ready = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(20), || {
            reqwest::blocking::get(&url).is_ok_and(|r| r.status().as_u16() == 200)
        })
    });
    let ready = ready.await.unwrap();
    assert!(ready, "floe never became ready:\n{}", floe.log());

    broker.publish_lines(TOPIC, 1, &reading(3.0));
    let driver = Driver::start(dir.path());
    let browser = browser(&driver, &dir.path().join("profile")).await;
    browser.goto(&format!("http://{addr}/")).await.unwrap();
    assert!(
        wait_for_level(&browser, "ok", Duration::from_secs(10)).await,
        "truck-7's tile never showed: {:?}\n{}",
        tile_class(&browser).await,
        floe.log()
    );

    let published = Instant::now();
    broker.publish_lines(TOPIC, 1, &reading(9.5));
    let red = wait_for_level(&browser, "critical", Duration::from_secs(1)).await;
    let took = published.elapsed();
    let screenshot = browser.screenshot().await.unwrap();
    std::fs::write(dir.path().join("dashboard.png"), &screenshot).unwrap();
    assert!(
        red,
        "not red within 1 s ({took:?}): {:?}",
        tile_class(&browser).await
    );
    assert!(
        screenshot.starts_with(b"\x89PNG"),
        "the screenshot is not a PNG"
    );
    let feed = browser.find(Locator::Id("feed")).await.unwrap();
    let feed = feed.text().await.unwrap();
    assert!(
        feed.contains("too_warm") && feed.contains("firing"),
        "{feed}"
    );

    let rates = browser.find(Locator::Id("rates")).await.unwrap();
    let rates = rates.text().await.unwrap();
    assert!(
        rates.starts_with("fleet: ") && rates.ends_with(" events/s"),
        "{rates:?}"
    );

    broker.publish_lines(TOPIC, 1, &reading(3.0));
    assert!(
        wait_for_level(&browser, "ok", Duration::from_secs(5)).await,
        "not back after the resolve: {:?}",
        tile_class(&browser).await
    );
    browser.close().await.unwrap();
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
}

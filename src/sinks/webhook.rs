//! `webhook`: alerts sent to an HTTP receiver.
//!
//! ```yaml
//! page:
//!   type: webhook
//!   inputs: [too_warm]
//!   url: https://alerts.example.com/floe/{rule}/{key}
//!   headers: {Authorization: "Bearer ${ALERTS_TOKEN}"}
//!   batch: 50                 # alerts per request, as a JSON array; 1 (the default) sends each as an object
//!   body: '{{"text": "{message}", "truck": "{key}"}}'   # instead of the alert; {{ }} are braces
//!   timeout: 10s
//!   tls: {ca_file: ca.pem, cert_file: floe.pem, key_file: floe.key}
//!   retry: {initial: 500ms, max: 1m}
//! ```
//!
//! A request that fails to connect, times out, or is answered 408, 429 or
//! 5xx is retried with exponential backoff and jitter (a 429's
//! `Retry-After`, in seconds, is honoured). Any other answer but 2xx is
//! permanent: the alerts go to the dead-letter sink with the status and
//! the start of the response, and are not retried.
//!
//! With a state dir, alerts wait in a spool on disk (see
//! [`crate::state::spool`]) and are acknowledged once there: a receiver
//! down for hours holds nothing up, and a restart, even after kill -9,
//! delivers what was not delivered. Stopping gives a receiver that is up
//! a few seconds to take what is left; the rest stays for the next run.
//! Without a state dir, each batch is acknowledged once delivered, and a
//! receiver that is down holds the pipeline back until it is up. Either
//! way alerts go out in the order they came, one request at a time.
//!
//! Alerts a rule's notification policy held back (`suppressed`, see
//! [`crate::operators::notify`]) are not sent. Header values are secrets:
//! they are never logged or dead-lettered.

use super::{Batch, Sink, SinkError, SinkSpec};
use crate::backoff::Backoff;
use crate::config::{Context, Duration};
use crate::event::Value;
use crate::event::template::Template;
use crate::runtime::{BoxFuture, DeadLetters, Shutdown, SinkMetrics};
use crate::state::spool::{self, Spool, Unsent};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc;

/// Once the input has ended, how long a spooled sink keeps trying before
/// it leaves what is left for the next run.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes of a rejecting response kept in the dead letter.
const EXCERPT: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    url: UrlTemplate,
    #[serde(default)]
    method: Method,
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
    #[serde(default = "one")]
    batch: usize,
    /// What to send for each alert instead of the alert's JSON: a
    /// template of the alert's fields.
    body: Option<BodyTemplate>,
    #[serde(default = "ten_seconds")]
    timeout: Duration,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    retry: Retry,
}

fn one() -> usize {
    1
}

fn ten_seconds() -> Duration {
    Duration(10_000)
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Method {
    #[default]
    Post,
    Put,
}

/// A header value, kept out of logs and `Debug`.
#[derive(Deserialize)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    /// PEM certificates to trust besides the system's.
    ca_file: Option<PathBuf>,
    /// A client certificate and its key, PEM.
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    #[serde(default = "half_a_second")]
    initial: Duration,
    #[serde(default = "a_minute")]
    max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: half_a_second(),
            max: a_minute(),
        }
    }
}

fn half_a_second() -> Duration {
    Duration(500)
}

fn a_minute() -> Duration {
    Duration(60_000)
}

/// `body:`, a template of the alert's fields (`{message}`, `{key}`, any
/// detail), whose values go in JSON-escaped.
#[derive(Clone, Debug)]
struct BodyTemplate(Template);

impl<'de> Deserialize<'de> for BodyTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Template::parse(&text)
            .map(BodyTemplate)
            .map_err(serde::de::Error::custom)
    }
}

impl BodyTemplate {
    /// The body for the alert whose JSON is `line`. A field the alert
    /// does not have renders as `?`.
    fn render(&self, line: &str) -> Vec<u8> {
        let alert: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_default();
        let text = self.0.render(|name| match alert.get(name)? {
            serde_json::Value::Number(n) => n.as_f64().map(Value::Num),
            serde_json::Value::Bool(b) => Some(Value::Bool(*b)),
            other => {
                // Escaped for a JSON string: the template puts the quotes.
                let text = match other {
                    serde_json::Value::String(s) => s.clone(),
                    json => json.to_string(),
                };
                let quoted = serde_json::Value::String(text).to_string();
                Some(Value::Str(quoted[1..quoted.len() - 1].into()))
            }
        });
        text.into_bytes()
    }
}

const URL_VARS: &[&str] = &["pipeline", "rule", "key"];

/// `url:` with placeholders, whose values are percent-encoded.
#[derive(Clone, Debug)]
struct UrlTemplate(Template);

impl<'de> Deserialize<'de> for UrlTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let error = serde::de::Error::custom;
        let template = Template::parse(&text).map_err(error)?;
        if let Some(unknown) = template.vars().find(|v| !URL_VARS.contains(v)) {
            return Err(error(format!(
                "unknown placeholder `{{{unknown}}}` in url, expected one of: {}",
                URL_VARS.join(", ")
            )));
        }
        let sample = template.render(|_| Some(Value::Str("x".into())));
        let parsed = reqwest::Url::parse(&sample).map_err(|e| error(format!("url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(error("url: expected http:// or https://".to_string()));
        }
        Ok(UrlTemplate(template))
    }
}

impl UrlTemplate {
    fn render(&self, pipeline: &str, rule: &str, key: &str) -> String {
        self.0.render(|var| {
            let value = match var {
                "pipeline" => pipeline,
                "rule" => rule,
                _ => key,
            };
            Some(Value::Str(percent_encode(value).into()))
        })
    }
}

/// Keeps RFC 3986's unreserved characters; encodes every other byte.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl SinkSpec for Config {
    fn open(&self, ctx: &Context) -> Result<Box<dyn Sink>, SinkError> {
        let what = format!("sink \"{}\"", ctx.id);
        let invalid = |reason: String| SinkError::Failed {
            what: what.clone(),
            reason,
        };
        let mut headers = HeaderMap::new();
        for (name, Secret(value)) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(
                self.timeout.ms().max(1) as u64
            ))
            .default_headers(headers);
        let read = |path: &PathBuf| {
            let path = ctx.base.join(path);
            std::fs::read(&path).map_err(|source| SinkError::Open {
                path: path.display().to_string(),
                source,
            })
        };
        if let Some(ca) = &self.tls.ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| invalid(format!("ca_file: {e}")))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                let pem = [read(cert)?, read(key)?].concat();
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| invalid(format!("cert_file/key_file: {e}")))?;
                client = client.identity(identity);
            }
            (None, None) => {}
            _ => return Err(invalid("tls needs both cert_file and key_file".into())),
        }
        let client = client
            .build()
            .map_err(|e| invalid(format!("cannot set up HTTP: {e}")))?;
        let spool = match ctx.state_dir {
            Some(dir) => {
                let dir = dir.join("sinks").join(ctx.id);
                Some(spool::open(&dir).map_err(|e| invalid(e.to_string()))?)
            }
            None => None,
        };
        let method = match self.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let sender = Sender {
            client,
            method,
            what,
            id: ctx.id.to_string(),
            retry: (self.retry.initial.ms(), self.retry.max.ms()),
            metrics: ctx.sink_metrics(),
        };
        Ok(Box::new(WebhookSink {
            sender,
            url: self.url.clone(),
            pipeline: ctx.pipeline.to_string(),
            batch: self.batch.max(1),
            body: self.body.clone(),
            spool,
        }))
    }
}

struct WebhookSink {
    sender: Sender,
    url: UrlTemplate,
    pipeline: String,
    batch: usize,
    body: Option<BodyTemplate>,
    spool: Option<(Spool, Unsent)>,
}

/// Sends requests, retrying what may succeed later.
struct Sender {
    client: reqwest::Client,
    method: reqwest::Method,
    what: String,
    id: String,
    /// Backoff floor and ceiling, ms.
    retry: (i64, i64),
    metrics: SinkMetrics,
}

/// How a request ended.
enum Delivery {
    Delivered,
    /// Answered with a status that retrying will not change.
    Rejected(String),
    /// Still failing when there was no more time.
    GaveUp,
}

/// One request's worth of alerts: consecutive ones for the same URL.
struct Request<'a> {
    url: &'a str,
    lines: Vec<&'a [u8]>,
}

impl Request<'_> {
    fn body(&self) -> Vec<u8> {
        match self.lines.as_slice() {
            [one] => one.to_vec(),
            lines => {
                let mut body = b"[".to_vec();
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line);
                }
                body.push(b']');
                body
            }
        }
    }
}

/// Groups `(url, body)` in order into requests of up to `batch` alerts.
fn requests<'a>(items: &'a [(String, Cow<'a, [u8]>)], batch: usize) -> Vec<Request<'a>> {
    let mut requests: Vec<Request> = Vec::new();
    for (url, line) in items {
        match requests.last_mut() {
            Some(last) if last.url == url && last.lines.len() < batch => last.lines.push(line),
            _ => requests.push(Request {
                url,
                lines: vec![line],
            }),
        }
    }
    requests
}

impl Sender {
    /// Sends one request until it is delivered or rejected, or until
    /// `deadline`.
    async fn send(&self, request: &Request<'_>, deadline: Option<Instant>) -> Delivery {
        let (initial, max) = self.retry;
        let ms = |ms: i64| std::time::Duration::from_millis(ms.max(1) as u64);
        let mut backoff = Backoff::new(ms(initial), ms(max));
        let body = request.body();
        let mut failures = 0u64;
        loop {
            let sent = self
                .client
                .request(self.method.clone(), request.url)
                .body(body.clone())
                .send()
                .await;
            let (problem, wait) = match sent {
                Ok(response) if response.status().is_success() => {
                    if failures > 0 {
                        tracing::info!("{}: delivered after {failures} failed attempts", self.what);
                    }
                    return Delivery::Delivered;
                }
                Ok(response) => {
                    let status = response.status();
                    if !retryable(status) {
                        let text = response.text().await.unwrap_or_default();
                        let excerpt: String = text.chars().take(EXCERPT).collect();
                        return Delivery::Rejected(format!("HTTP {status}: {excerpt}"));
                    }
                    let wait = retry_after(response.headers());
                    (
                        format!("HTTP {status}"),
                        wait.unwrap_or_else(|| backoff.failed()),
                    )
                }
                // Without the URL: it may carry a token.
                Err(e) => (e.without_url().to_string(), backoff.failed()),
            };
            self.metrics.failures.inc();
            failures += 1;
            // Once per outage at warn, not once per attempt.
            match failures {
                1 => tracing::warn!("{}: {problem}; retrying with backoff", self.what),
                _ => tracing::debug!("{}: {problem}; retrying in {wait:?}", self.what),
            }
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                return Delivery::GaveUp;
            }
            tokio::time::sleep(wait).await;
            self.metrics.retries.inc_by(request.lines.len() as u64);
        }
    }

    /// Sends the alerts of a rejected request to the dead-letter sink.
    async fn dead_letter(&self, request: &Request<'_>, reason: &str, dead: &DeadLetters) {
        tracing::warn!(
            "{}: {} alerts rejected ({reason}); dead-lettered",
            self.what,
            request.lines.len()
        );
        let origin = serde_json::json!({"sink": self.id});
        let why = format!("webhook: {reason}");
        for line in &request.lines {
            let sent = dead.send(&self.id, (&why, "webhook_rejected"), origin.clone(), line);
            if sent.await.is_err() {
                tracing::error!(
                    "{}: an alert rejected ({reason:?}) could not be dead-lettered",
                    self.what
                );
            }
        }
    }
}

/// 408, 429 and 5xx may succeed later; any other failure will not.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 429)
}

/// A `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::Duration::from_secs(seconds.min(3600)))
}

impl Sink for WebhookSink {
    fn run(
        mut self: Box<Self>,
        records: mpsc::Receiver<Batch>,
        dead: DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            match self.spool.take() {
                Some((spool, unsent)) => self.run_spooled(records, spool, unsent, dead).await,
                None => self.run_direct(records, dead).await,
            }
        })
    }
}

impl WebhookSink {
    /// Where `record` goes, and what is sent for it.
    fn request_for<'a>(&self, record: &'a super::Record) -> (String, Cow<'a, [u8]>) {
        let url = (self.url).render(&self.pipeline, &record.component, &record.key);
        let body = match &self.body {
            Some(template) => Cow::Owned(template.render(&record.line)),
            None => Cow::Borrowed(record.line.as_bytes()),
        };
        (url, body)
    }

    /// Without a state dir: each batch delivered, then acknowledged.
    async fn run_direct(
        self,
        mut records: mpsc::Receiver<Batch>,
        dead: DeadLetters,
    ) -> Result<(), SinkError> {
        while let Some(batch) = records.recv().await {
            let items: Vec<(String, Cow<[u8]>)> = (batch.records.iter())
                .filter(|r| !r.suppressed)
                .map(|r| self.request_for(r))
                .collect();
            for request in requests(&items, self.batch) {
                if let Delivery::Rejected(reason) = self.sender.send(&request, None).await {
                    self.sender.dead_letter(&request, &reason, &dead).await;
                }
            }
            drop(items);
            batch.done();
        }
        Ok(())
    }

    /// With a state dir: batches spooled (and acknowledged once on disk)
    /// on one side, delivered from the spool on the other.
    async fn run_spooled(
        self,
        mut records: mpsc::Receiver<Batch>,
        mut spool: Spool,
        unsent: Unsent,
        dead: DeadLetters,
    ) -> Result<(), SinkError> {
        let ended = Shutdown::default();
        let what = self.sender.what.clone();
        let this = std::sync::Arc::new(self);
        let deliverer = tokio::spawn(this.clone().deliver(unsent, dead, ended.clone()));
        let spooling = tokio::task::spawn_blocking(move || {
            while let Some(batch) = records.blocking_recv() {
                for record in batch.records.iter().filter(|r| !r.suppressed) {
                    let (url, body) = this.request_for(record);
                    spool.append(&url, &body)?;
                }
                spool.commit(batch.acks)?;
            }
            Ok::<_, spool::Stopped>(())
        });
        let spooled = spooling.await;
        ended.request();
        let delivered = deliverer.await;
        let failed = |reason: String| SinkError::Failed {
            what: what.clone(),
            reason,
        };
        spooled
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        delivered.map_err(|e| failed(e.to_string()))?
    }

    /// Delivers from the spool in order until the input has ended and the
    /// spool is empty, or the grace after the end has run out.
    async fn deliver(
        self: std::sync::Arc<Self>,
        mut unsent: Unsent,
        dead: DeadLetters,
        ended: Shutdown,
    ) -> Result<(), SinkError> {
        let failed = |e: crate::state::StateError| SinkError::Failed {
            what: self.sender.what.clone(),
            reason: e.to_string(),
        };
        let mut deadline = None;
        loop {
            if ended.is_requested() && deadline.is_none() {
                deadline = Some(Instant::now() + STOP_GRACE);
            }
            let spooled = unsent.next(self.batch * 16).map_err(failed)?;
            if spooled.is_empty() {
                if ended.is_requested() && unsent.caught_up() {
                    return Ok(());
                }
                tokio::select! {
                    () = unsent.more() => {}
                    () = ended.requested() => {}
                }
                continue;
            }
            let items: Vec<(String, Cow<[u8]>)> = (spooled.iter())
                .map(|r| (r.topic.clone(), Cow::Borrowed(r.payload.as_slice())))
                .collect();
            // Saved once per read, not per request: an fsync each.
            let mut done = 0;
            let mut gave_up = false;
            for request in requests(&items, self.batch) {
                match self.sender.send(&request, deadline).await {
                    Delivery::Delivered => {}
                    Delivery::Rejected(reason) => {
                        self.sender.dead_letter(&request, &reason, &dead).await
                    }
                    Delivery::GaveUp => {
                        gave_up = true;
                        break;
                    }
                }
                done += request.lines.len();
            }
            if done > 0 {
                unsent.delivered(spooled[done - 1].seq).map_err(failed)?;
            }
            if gave_up {
                tracing::warn!(
                    "{}: the receiver is still failing; undelivered alerts stay in the spool for the next run",
                    self.sender.what
                );
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_percent_encoded_placeholders_and_must_be_http() {
        let url: UrlTemplate =
            serde_saphyr::from_str("\"https://h/a/{rule}/{key}\"").expect("a url");
        assert_eq!(
            url.render("p", "too warm", "t/1"),
            "https://h/a/too%20warm/t%2F1"
        );
        let bad = serde_saphyr::from_str::<UrlTemplate>("\"ftp://h/{key}\"");
        assert!(bad.unwrap_err().to_string().contains("http"));
        let unknown = serde_saphyr::from_str::<UrlTemplate>("\"http://h/{device}\"");
        assert!(unknown.unwrap_err().to_string().contains("placeholder"));
    }

    #[test]
    fn consecutive_alerts_for_one_url_share_a_request_of_at_most_batch() {
        let items: Vec<(String, Cow<[u8]>)> = [("a", "1"), ("a", "2"), ("a", "3"), ("b", "4")]
            .iter()
            .map(|(u, l)| (u.to_string(), Cow::Borrowed(l.as_bytes())))
            .collect();
        let grouped = requests(&items, 2);
        let bodies: Vec<String> = (grouped.iter())
            .map(|r| String::from_utf8(r.body()).unwrap())
            .collect();
        assert_eq!(bodies, ["[1,2]", "3", "4"]);
    }

    #[test]
    fn a_body_template_takes_the_alerts_fields_escaped_for_json() {
        let body: BodyTemplate = serde_saphyr::from_str(
            r#"'{{"text": "{message}", "at": {value}, "truck": "{key}", "gone": "{nope}"}}'"#,
        )
        .unwrap();
        let line = r#"{"key":"t\"1","message":"cargo at 4.6 C\nsay \"hot\"","value":4.6}"#;
        let rendered = String::from_utf8(body.render(line)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&rendered).expect(&rendered);
        assert_eq!(json["text"], "cargo at 4.6 C\nsay \"hot\"");
        assert_eq!(json["truck"], "t\"1");
        assert_eq!(json["at"], 4.6);
        assert_eq!(json["gone"], "?");
    }

    #[test]
    fn header_values_never_show_in_debug_output() {
        let config: Config =
            serde_saphyr::from_str("url: http://h/x\nheaders: {Authorization: Bearer s3cret}\n")
                .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}

//! Kafka helpers for the tests: producing and consuming with rdkafka
//! directly, so floe is checked against an independent client, and a real
//! Kafka-compatible broker (tansu) on a free port.

use super::broker::{free_port, wait_for};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Reads `count` records of `topic` from the start: (key, payload).
pub fn consume(brokers: &str, topic: &str, count: usize) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "floe-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut records = Vec::new();
        while records.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await;
            let Ok(Ok(m)) = next else { break };
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            records.push((text(m.key()), text(m.payload())));
        }
        records
    })
}

/// Produces keyed records, waiting for every delivery. Waits while the
/// brokers are away: nothing is given up on.
pub fn produce(brokers: &str, topic: &str, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
    produce_with(brokers, topic, records, &[]);
}

/// As [`produce`], with producer `options` (librdkafka's names).
pub fn produce_with(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (String, Vec<u8>)>,
    options: &[(&str, &str)],
) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5");
    for (name, value) in options {
        config.set(*name, *value);
    }
    let producer: BaseProducer = config.create().expect("a producer");
    for (key, payload) in records {
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("delivered");
}

/// A tansu broker, killed when dropped.
pub struct Tansu {
    child: Child,
    port: u16,
}

fn tansu_binary() -> PathBuf {
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|home| home.join("bin/tansu"));
    match in_cargo_home {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from("tansu"),
    }
}

impl Tansu {
    pub fn start(dir: &Path) -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("tansu.log")).unwrap())
            .spawn()
            .expect("tansu runs: cargo install --locked tansu --features dynostore");
        let up = wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "tansu did not listen on {port}");
        Tansu { child, port }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// tansu creates no topic on first use.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(tansu_binary())
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .status()
            .unwrap();
        assert!(status.success(), "creating topic {name}");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

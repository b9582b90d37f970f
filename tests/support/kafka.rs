//! Kafka helpers for the tests: producing and consuming with rdkafka
//! directly, so floe is checked against an independent client.

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
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

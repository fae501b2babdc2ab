//! The Kafka host on librdkafka's in-process mock cluster: malformed messages, panicking and
//! flaky stages never stall a partition; poison input ends as a dead letter plus an error
//! signal; retries are bounded; every offset ends committed; SIGTERM-style drain finishes
//! in-flight work.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clipguard_pipeline::embedded::EmbeddedBroker;
use clipguard_pipeline::graph::Node;
use clipguard_pipeline::kafka::{HostConfig, KafkaConfig, KafkaHost};
use clipguard_pipeline::metrics::StageMetrics;
use clipguard_pipeline::telemetry::render;
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, topics};
use clipguard_schemas::{DeadLetter, Signal, Verdict};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The scripted stage's place: not on clips.signals, so that its own error signals do not feed
/// back into it.
const SCRIPTED: Node = Node {
    stage: "scripted",
    consumes: topics::SUBMITTED,
    produces: &[topics::SIGNALS, topics::VERDICTS, topics::DLQ],
    state: None,
};

/// A stage whose behaviour is chosen by the input's `stage` field.
struct Scripted {
    flaky_attempts: AtomicU32,
}

impl Stage for Scripted {
    type Input = Signal;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        "scripted"
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn process(&self, input: Signal, ctx: &ProcessCtx) -> Result<Vec<Record>, StageError> {
        match input.stage.as_str() {
            "panic" => panic!("scripted panic"),
            "flaky" if self.flaky_attempts.fetch_add(1, Ordering::SeqCst) < 2 => {
                Err(StageError::external("flaky", "try again"))
            }
            "always-fails" => Err(StageError::external("down", "never works")),
            "bad-input" => Err(StageError::input("bad_input", "cannot be processed")),
            // Output over the message limit: a bug in the stage, never sent.
            "oversized" => Ok(vec![Record::encode(
                topics::VERDICTS,
                &ctx.clip_id,
                &Verdict {
                    clip_id: ctx.clip_id.clone(),
                    rationale: "x".repeat(topics::MAX_MESSAGE_BYTES + 1),
                    ..Default::default()
                },
            )]),
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!()
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(vec![Record::encode(
                    topics::VERDICTS,
                    &ctx.clip_id,
                    &Verdict {
                        clip_id: ctx.clip_id.clone(),
                        ..Default::default()
                    },
                )])
            }
            // A verdict, and a signal that leaves its clip id, attempt and time to the host.
            _ => Ok(vec![
                Record::encode(
                    topics::VERDICTS,
                    &ctx.clip_id,
                    &Verdict {
                        clip_id: ctx.clip_id.clone(),
                        ..Default::default()
                    },
                ),
                Record::signal(
                    &ctx.clip_id,
                    &Signal {
                        stage: "scripted".into(),
                        ..Default::default()
                    },
                ),
            ]),
        }
    }
}

fn read_all(brokers: &str, topic: &str, wait: Duration) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_never_stalls_and_every_offset_is_committed() {
    let broker = EmbeddedBroker::start(1).unwrap();
    let brokers = broker.bootstrap_servers();
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        partitions: 1,
        create_topics: false,
        ..Default::default()
    };
    let producer: FutureProducer = kafka.producer().unwrap();

    // (key, payload): good, malformed bytes, panic, flaky, always failing, bad input, oversized
    // output, hang, slow, good.
    let signal = |stage: &str| {
        prost::Message::encode_to_vec(&Signal {
            stage: stage.into(),
            ..Default::default()
        })
    };
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("good-1", signal("ok")),
        ("garbage", vec![0xff, 0xff, 0xff, 0x01, 0x02]),
        ("panics", signal("panic")),
        ("flaky", signal("flaky")),
        ("down", signal("always-fails")),
        ("rejected", signal("bad-input")),
        ("oversized", signal("oversized")),
        ("hangs", signal("hang")),
        ("slow", signal("slow")),
        ("good-2", signal("ok")),
    ];
    for (key, payload) in &inputs {
        producer
            .send(
                FutureRecord::to(topics::SUBMITTED)
                    .key(*key)
                    .payload(payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    let mut registry = Registry::default();
    let metrics = StageMetrics::register(&mut registry, "scripted");
    let host = KafkaHost {
        kafka: kafka.clone(),
        host: HostConfig {
            max_in_flight: 4,
            max_attempts: 3,
            retry_backoff_ms: 10,
            ..Default::default()
        },
    };
    let stage = Arc::new(Scripted {
        flaky_attempts: AtomicU32::new(0),
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn({
        let metrics = metrics.clone();
        async move { host.run(stage, SCRIPTED, metrics, stop_rx).await }
    });

    let until = Instant::now() + Duration::from_secs(60);
    while metrics.processed.get() < inputs.len() as u64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metrics.processed.get(),
        inputs.len() as u64,
        "every message finished:\n{}",
        render(&registry)
    );
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();

    let outputs: Vec<String> = read_all(&brokers, topics::VERDICTS, Duration::from_secs(1))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in ["good-1", "flaky", "slow", "good-2"] {
        assert!(
            outputs.contains(&key.to_string()),
            "{key} produced its output: {outputs:?}"
        );
    }
    let letters: HashMap<String, DeadLetter> =
        read_all(&brokers, topics::DLQ, Duration::from_secs(1))
            .into_iter()
            .map(|(k, p)| (k, prost::Message::decode(p.as_slice()).unwrap()))
            .collect();
    for (key, reason, attempts) in [
        ("garbage", "malformed_message", 0),
        // Internal errors (a panic, an attempt past its deadline) are bugs: never retried.
        ("panics", "panic", 1),
        ("down", "down", 3),
        // Bad input: retrying cannot help.
        ("rejected", "bad_input", 1),
        // An oversized output is the stage's bug: dead-lettered at once, named as such.
        ("oversized", "oversized_output", 1),
        ("hangs", "attempt_timeout", 1),
    ] {
        let letter = letters
            .get(key)
            .unwrap_or_else(|| panic!("{key} dead-lettered: {:?}", letters.keys()));
        assert!(
            letter.reason.starts_with(reason),
            "{key}: {}",
            letter.reason
        );
        assert_eq!(letter.attempts, attempts, "{key}: bounded retries");
        assert_eq!(letter.stage, "scripted");
    }
    assert_eq!(
        letters.len(),
        6,
        "only poison is dead-lettered: {:?}",
        letters.keys()
    );
    let signals: Vec<(String, Signal)> =
        read_all(&brokers, topics::SIGNALS, Duration::from_secs(1))
            .into_iter()
            .map(|(k, p)| (k, prost::Message::decode(p.as_slice()).unwrap()))
            .collect();
    let error_signals: Vec<String> = signals
        .iter()
        .filter(|(_, s)| s.stage == "scripted" && s.error.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    // The host stamps every signal: the attempt it came from, the clip id, the time.
    for (key, attempt, failed) in [("good-1", 1, false), ("flaky", 3, false), ("down", 3, true)] {
        let (_, s) = signals
            .iter()
            .find(|(k, s)| k == key && s.error.is_some() == failed)
            .unwrap_or_else(|| panic!("{key}: a signal"));
        assert_eq!(s.attempt, attempt, "{key}: {s:?}");
        assert_eq!(s.clip_id, key);
        assert!(s.produced_at_ms > 0, "{key}: {s:?}");
    }
    for key in [
        "garbage",
        "panics",
        "down",
        "rejected",
        "oversized",
        "hangs",
    ] {
        assert!(
            error_signals.contains(&key.to_string()),
            "{key} got an error signal: {error_signals:?}"
        );
    }

    // The group's committed offset is past the last input message.
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "clipguard-scripted")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topics::SUBMITTED, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(5))
        .unwrap();
    let offset = committed
        .find_partition(topics::SUBMITTED, 0)
        .unwrap()
        .offset();
    assert_eq!(
        offset,
        Offset::Offset(inputs.len() as i64),
        "committed through the last input"
    );
    let text = render(&registry);
    assert!(
        text.contains("clipguard_scripted_dead_letters_total 6"),
        "{text}"
    );
    // Every failed attempt counted once, the undecodable message once (it is never attempted).
    for (error_type, count) in [
        ("flaky", 2),
        ("panic", 1),
        ("down", 3),
        ("attempt_timeout", 1),
        ("bad_input", 1),
        ("malformed_message", 1),
    ] {
        let line =
            format!("clipguard_scripted_errors_total{{error_type=\"{error_type}\"}} {count}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

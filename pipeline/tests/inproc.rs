//! The in-process host contains a panicking or hanging stage, and one that produces on a topic
//! its node does not declare, exactly as the Kafka host does:
//! the message becomes a dead letter with the error's kind plus the stage's error signal, and
//! the other messages go on.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clipguard_pipeline::graph::Node;
use clipguard_pipeline::inproc::Topology;
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, topics};
use clipguard_schemas::{DeadLetter, Signal};

const NODE: Node = Node {
    stage: "scripted",
    consumes: topics::SUBMITTED,
    produces: &[topics::SIGNALS, topics::DLQ],
    state: None,
};

/// Panics, hangs or answers, by the input's `stage` field.
struct Scripted;

impl Stage for Scripted {
    type Input = Signal;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        "scripted"
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn process(&self, input: Signal, ctx: &ProcessCtx) -> Result<Vec<Record>, StageError> {
        match input.stage.as_str() {
            "panic" => panic!("scripted panic"),
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!()
            }
            // A record on a topic the node does not declare: the stage's bug.
            "stray" => Ok(vec![Record::encode(
                topics::TRANSCRIPTS,
                &ctx.clip_id,
                &Signal::default(),
            )]),
            _ => Ok(vec![Record::signal(
                &ctx.clip_id,
                &Signal {
                    stage: "scripted".into(),
                    ..Default::default()
                },
            )]),
        }
    }
}

fn input(key: &str, behaviour: &str) -> Record {
    Record::encode(
        topics::SUBMITTED,
        key,
        &Signal {
            stage: behaviour.into(),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_and_a_hang_are_contained_as_on_the_kafka_host() {
    let mut topology = Topology::new();
    topology.add(std::sync::Arc::new(Scripted), NODE);
    let started = Instant::now();
    let out = topology
        .run(vec![
            input("panics", "panic"),
            input("hangs", "hang"),
            input("strays", "stray"),
            input("good", "ok"),
        ])
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hang was cut short"
    );

    let letters: Vec<(String, DeadLetter)> = out
        .iter()
        .filter(|r| r.topic == topics::DLQ)
        .map(|r| {
            (
                r.key.clone(),
                prost::Message::decode(r.payload.as_slice()).unwrap(),
            )
        })
        .collect();
    for (key, kind) in [
        ("panics", "panic"),
        ("hangs", "attempt_timeout"),
        ("strays", "undeclared_output"),
    ] {
        let (_, letter) = letters
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} dead-lettered: {letters:?}"));
        assert!(letter.reason.starts_with(kind), "{key}: {}", letter.reason);
        assert_eq!(letter.attempts, 1, "{key}: internal errors are not retried");
        assert_eq!(letter.topic, topics::SUBMITTED);
    }
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(
        !out.iter().any(|r| r.topic == topics::TRANSCRIPTS),
        "an undeclared output is never routed"
    );

    let signals: Vec<Signal> = out
        .iter()
        .filter(|r| r.topic == topics::SIGNALS)
        .map(|r| prost::Message::decode(r.payload.as_slice()).unwrap())
        .collect();
    for key in ["panics", "hangs", "strays", "good"] {
        let s = signals
            .iter()
            .find(|s| s.clip_id == key)
            .unwrap_or_else(|| panic!("{key}: a signal, stamped with its clip id: {signals:?}"));
        assert_eq!(s.error.is_some(), key != "good", "{key}: {s:?}");
        assert_eq!(s.attempt, 1, "{key}");
    }
}

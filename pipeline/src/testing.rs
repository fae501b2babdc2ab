//! Checks that every stage's tests run against the runtime: the shared telemetry, by value,
//! after real work and on the error path. Lives beside the runtime (not in a test crate) so each
//! stage crate's tests call the same check on its own stage.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::PipelineError;
use crate::embedded::EmbeddedBroker;
use crate::kafka::{HostConfig, KafkaConfig, KafkaHost};
use crate::metrics::StageMetrics;
use crate::telemetry::render;

/// The stage `name` consuming `topic`, started by `run` on the Kafka host over an embedded
/// broker, is sent `good` (a payload that it processes to outputs) and then bytes no message
/// decodes from; asserts the shared telemetry's values: both received and processed, one dead
/// letter with its `malformed_message` error, the good outputs plus the dead letter and its
/// poison outputs produced (at least `min_produced` records in all),
/// two observed processing times and nothing left in flight. Panics with the rendered metrics
/// when a value is wrong; returns them for stage-specific checks.
pub async fn assert_shared_telemetry_of<F>(
    name: &str,
    topic: &'static str,
    run: F,
    good: Vec<u8>,
    min_produced: u64,
) -> String
where
    F: FnOnce(
        KafkaHost,
        StageMetrics,
        watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), PipelineError>>,
{
    let broker = EmbeddedBroker::start(1).expect("embedded broker");
    let kafka = KafkaConfig {
        brokers: broker.bootstrap_servers(),
        partitions: 1,
        create_topics: false,
        ..Default::default()
    };
    let mut registry = Registry::default();
    let metrics = StageMetrics::register(&mut registry, name);
    let host = KafkaHost {
        kafka: kafka.clone(),
        host: HostConfig::default(),
    };
    let (stop, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(run(host, metrics.clone(), stop_rx));
    let producer: FutureProducer = kafka.producer().expect("producer");
    let malformed = vec![0xff_u8, 0xff, 0xff, 0x01, 0x02];
    for (key, payload) in [("clip-good", &good), ("clip-malformed", &malformed)] {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("send to the embedded broker");
    }
    let until = Instant::now() + Duration::from_secs(60);
    while metrics.processed.get() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).expect("stop");
    worker
        .await
        .expect("stage task")
        .expect("stage ran and stopped cleanly");
    let text = render(&registry);
    let p = format!("clipguard_{name}_");
    for line in [
        format!("{p}received_total 2"),
        format!("{p}processed_total 2"),
        format!("{p}dead_letters_total 1"),
        format!("{p}errors_total{{error_type=\"malformed_message\"}} 1"),
        format!("{p}processing_seconds_count 2"),
        format!("{p}in_flight 0"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "stage {name}: `{line}` missing from\n{text}"
        );
    }
    // The good input's outputs (at least one), then the dead letter and its poison outputs.
    assert!(
        metrics.produced.get() >= min_produced,
        "stage {name}: {} records produced, expected at least {min_produced} (the good outputs \
         plus a dead letter and its poison outputs):\n{text}",
        metrics.produced.get()
    );
    text
}

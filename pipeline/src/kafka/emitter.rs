//! Producing records: trace headers, acknowledgements, bounded redelivery.

use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::PipelineError;
use crate::metrics::StageMetrics;
use crate::stage::{Emitter, Record};
use crate::topics;
use crate::trace::{TRACEPARENT, TraceContext};

/// Produces records with trace headers and waits for every acknowledgement.
#[derive(Clone)]
pub struct KafkaEmitter {
    pub(super) producer: FutureProducer,
    stage: &'static str,
    metrics: StageMetrics,
}

impl std::fmt::Debug for KafkaEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaEmitter")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

const DELIVERY_ATTEMPTS: u32 = 5;

impl KafkaEmitter {
    pub fn new(producer: FutureProducer, stage: &'static str, metrics: StageMetrics) -> Self {
        Self {
            producer,
            stage,
            metrics,
        }
    }

    /// Sends all records; resolves when all are acknowledged. Records that fail are retried;
    /// after [`DELIVERY_ATTEMPTS`] the error is returned (the worker must stop: its offsets are
    /// not committed, so the next owner redoes the work).
    pub async fn send_all(
        &self,
        mut records: Vec<Record>,
        trace: &TraceContext,
    ) -> Result<(), PipelineError> {
        for record in &records {
            if record.payload.len() > topics::MAX_MESSAGE_BYTES {
                return Err(PipelineError::OversizedRecord {
                    topic: record.topic.to_string(),
                    bytes: record.payload.len(),
                    limit: topics::MAX_MESSAGE_BYTES,
                });
            }
        }
        let mut last_error = String::new();
        for attempt in 1..=DELIVERY_ATTEMPTS {
            let sends = records.iter().map(|r| {
                let trace = r.trace.unwrap_or(*trace);
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: TRACEPARENT,
                        value: Some(&trace.header()),
                    })
                    .insert(Header {
                        key: "clipguard-stage",
                        value: Some(self.stage),
                    });
                let rec = FutureRecord::to(r.topic)
                    .key(&r.key)
                    .payload(&r.payload)
                    .headers(headers);
                self.producer.send(rec, Duration::from_secs(10))
            });
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            for (record, result) in records.into_iter().zip(results) {
                match result {
                    Ok(_) => {
                        self.metrics.produced.inc();
                    }
                    Err((err, _)) => {
                        last_error = format!("{}: {err}", record.topic);
                        failed.push(record);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            tracing::warn!(stage = self.stage, attempt, failed = failed.len(), error = %last_error, "delivery failed, retrying");
            records = failed;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(PipelineError::Delivery {
            attempts: DELIVERY_ATTEMPTS,
            message: last_error,
        })
    }
}

impl Emitter for KafkaEmitter {
    fn emit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), PipelineError>> {
        let trace = TraceContext::new_root();
        Box::pin(async move { self.send_all(records, &trace).await })
    }
}

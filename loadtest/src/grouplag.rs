//! Consumer-group lag as the brokers see it, which is what KEDA scales on: per stage, the
//! committed offsets of group `clipguard-<stage>` against the high watermarks of the stage's
//! input topic. Unlike a worker's own `consumer_lag` gauge, it also counts partitions that no
//! live replica owns (a group that did not rebalance shows here and nowhere else).

use std::collections::BTreeMap;
use std::time::Duration;

use clipguard_pipeline::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(3);

struct Reader {
    stage: String,
    topic: String,
    partitions: Vec<i32>,
    consumer: BaseConsumer,
}

/// Readers of every stage's group offsets (blocking calls: use from a blocking thread).
pub struct GroupLag {
    readers: Vec<Reader>,
}

impl std::fmt::Debug for GroupLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.readers.iter().map(|r| (&r.stage, &r.topic)))
            .finish()
    }
}

impl GroupLag {
    /// One reader per (stage, input topic). The readers never join their group: they only
    /// fetch its committed offsets.
    pub fn new(kafka: &KafkaConfig, stages: &[(String, String)]) -> anyhow::Result<Self> {
        let mut readers = Vec::new();
        for (stage, topic) in stages {
            let consumer: BaseConsumer = kafka
                .client_config()
                .set("group.id", format!("clipguard-{stage}"))
                .set("enable.auto.commit", "false")
                .create()?;
            let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default();
            readers.push(Reader {
                stage: stage.clone(),
                topic: topic.clone(),
                partitions,
                consumer,
            });
        }
        Ok(Self { readers })
    }

    /// Messages behind per stage: the sum over its input topic's partitions of the high
    /// watermark minus the group's committed offset (the low watermark where it has none).
    /// A stage whose offsets cannot be read now is left out of this reading.
    pub fn read(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for r in &self.readers {
            let mut tpl = TopicPartitionList::new();
            for p in &r.partitions {
                tpl.add_partition(&r.topic, *p);
            }
            let Ok(committed) = r.consumer.committed_offsets(tpl, TIMEOUT) else {
                continue;
            };
            let mut lag = 0i64;
            let mut ok = true;
            for p in &r.partitions {
                let Ok((low, high)) = r.consumer.fetch_watermarks(&r.topic, *p, TIMEOUT) else {
                    ok = false;
                    break;
                };
                let at = match committed.find_partition(&r.topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n,
                    _ => low,
                };
                lag += (high - at).max(0);
            }
            if ok {
                *out.entry(r.stage.clone()).or_default() += lag as f64;
            }
        }
        out
    }
}

//! A stage's memory across restarts, read back from a topic: [`StateFollower`] reads every
//! partition of the stage's state topic ([`crate::graph::Node::state`]) from the beginning and
//! keeps following it, handing each record to [`crate::Stage::restore`]. The host waits until the
//! follower has read what the topic held when the stage started, and again at every partition
//! assignment, before it processes input — so a replica that takes over a partition knows every
//! decision published before it got there, its own and its peers'.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaConfig;
use crate::error::PipelineError;

/// Reads a state topic on its own thread.
pub struct StateFollower {
    topic: &'static str,
    /// Next offset to read, per partition.
    positions: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// A consumer for watermark queries (the reading one lives on the thread).
    probe: BaseConsumer,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for StateFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFollower")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl StateFollower {
    /// Starts reading `topic` from the beginning of every partition; `restore(key, payload)` gets
    /// each record, in order within a partition.
    pub fn start(
        kafka: &KafkaConfig,
        client_id: &str,
        topic: &'static str,
        restore: impl Fn(&str, &[u8]) + Send + 'static,
    ) -> Result<Self, PipelineError> {
        let consumer_config = || {
            let mut cc = kafka.client_config();
            // No group: partitions are assigned by hand and nothing is committed.
            cc.set("group.id", format!("{client_id}-state"))
                .set("client.id", format!("{client_id}-state"))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("fetch.wait.max.ms", "50");
            cc
        };
        let reader: BaseConsumer = consumer_config().create()?;
        let probe: BaseConsumer = consumer_config().create()?;
        let partitions = partitions_of(&probe, topic)?;
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        reader.assign(&assignment)?;
        let positions: Arc<Mutex<BTreeMap<i32, i64>>> =
            Arc::new(Mutex::new(partitions.iter().map(|&p| (p, 0)).collect()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let positions = positions.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("{topic}-follower"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match reader.poll(Duration::from_millis(100)) {
                            Some(Ok(m)) => {
                                let key = m
                                    .key()
                                    .and_then(|k| std::str::from_utf8(k).ok())
                                    .unwrap_or_default();
                                restore(key, m.payload().unwrap_or_default());
                                lock(&positions).insert(m.partition(), m.offset() + 1);
                            }
                            Some(Err(err)) => {
                                tracing::warn!(topic, error = %err, "state topic read failed");
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            None => {}
                        }
                    }
                })
                .map_err(|e| PipelineError::Server(format!("state follower thread: {e}")))?
        };
        Ok(Self {
            topic,
            positions,
            probe,
            stop,
            thread: Some(thread),
        })
    }

    /// Blocks until everything the topic holds now has been read, or `limit` passes (an error
    /// naming how far it got). Call off the async threads.
    pub fn catch_up(&self, limit: Duration) -> Result<usize, PipelineError> {
        let started = Instant::now();
        let mut targets = BTreeMap::new();
        for (&p, _) in lock(&self.positions).iter() {
            // The watermark query retries while the broker is away, within the limit.
            let high = loop {
                match self
                    .probe
                    .fetch_watermarks(self.topic, p, QUERY_TIMEOUT.min(limit))
                {
                    Ok((_, high)) => break high,
                    Err(err) if started.elapsed() < limit => {
                        tracing::warn!(topic = self.topic, partition = p, error = %err, "watermark query failed; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            targets.insert(p, high);
        }
        let total: i64 = targets.values().sum();
        loop {
            let behind: i64 = {
                let positions = lock(&self.positions);
                targets
                    .iter()
                    .map(|(p, high)| (high - positions.get(p).copied().unwrap_or(0)).max(0))
                    .sum()
            };
            if behind == 0 {
                return Ok(total as usize);
            }
            if started.elapsed() >= limit {
                return Err(PipelineError::Server(format!(
                    "{}: {behind} of {total} records still unread after {:.0} s",
                    self.topic,
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StateFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The topic's partitions (retried while the broker is starting, up to the query timeout).
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, PipelineError> {
    let started = Instant::now();
    loop {
        let found = consumer
            .fetch_metadata(Some(topic), QUERY_TIMEOUT)
            .map_err(PipelineError::from)
            .and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| PipelineError::Server(format!("topic {topic} not found")))
            });
        match found {
            Ok(p) => return Ok(p),
            Err(err) if started.elapsed() < QUERY_TIMEOUT * 3 => {
                tracing::warn!(topic, error = %err, "state topic metadata; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(err) => return Err(err),
        }
    }
}

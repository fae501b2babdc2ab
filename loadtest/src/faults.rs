//! The fault run's moving parts: when and whom to kill, and what `clips.signals` says about work
//! that was redone.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clipguard_pipeline::kafka::KafkaConfig;
use clipguard_pipeline::topics;
use clipguard_schemas::Signal;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::profile::Faults;
use crate::report::FaultSummary;

/// The schedule of kills and the broker restart, with what happened so far.
#[derive(Debug)]
pub struct Chaos {
    pub faults: Faults,
    pub summary: FaultSummary,
    next_kill: Option<Instant>,
    rng: u64,
    broker_done: bool,
    first_done: usize,
}

impl Chaos {
    pub fn new(faults: Faults) -> Self {
        Self {
            rng: faults.seed ^ 0x9e37_79b9_7f4a_7c15,
            faults,
            summary: FaultSummary::default(),
            next_kill: None,
            broker_done: false,
            first_done: 0,
        }
    }

    /// xorshift64*: reproducible victims for a seed.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The slot to kill now, if a kill is due (`slots[i]`: slot `i`'s stage and whether it is
    /// running).
    pub fn victim(&mut self, now: Instant, slots: &[(&str, bool)]) -> Option<usize> {
        let every = Duration::from_secs_f64(self.faults.kill_every_s);
        let due = *self.next_kill.get_or_insert(now + every);
        if now < due {
            return None;
        }
        self.next_kill = Some(now + every);
        if self.first_done < self.faults.first.len() {
            let stage = self.faults.first[self.first_done].clone();
            self.first_done += 1;
            if let Some(i) = slots.iter().position(|(s, up)| *up && *s == stage) {
                return Some(i);
            }
        }
        let running: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].1).collect();
        if running.is_empty() {
            return None;
        }
        Some(running[(self.next() % running.len() as u64) as usize])
    }

    /// Whether the broker restart is due after `submitted` clips (once).
    pub fn broker_due(&mut self, submitted: usize) -> bool {
        let at = self.faults.broker_restart_after_clips;
        if self.broker_done || at == 0 || submitted < at {
            return false;
        }
        self.broker_done = true;
        true
    }
}

/// Records on `clips.signals` and distinct (clip, stage) pairs among them: everything up to the
/// high watermarks when called.
pub fn count_signals(kafka: &KafkaConfig) -> anyhow::Result<(usize, usize)> {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "clipguard-loadtest-signals")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topics::SIGNALS), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    let mut left = 0i64;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topics::SIGNALS, p, timeout)?;
        left += high - low;
        list.add_partition_offset(topics::SIGNALS, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut records = 0;
    let mut distinct = HashSet::new();
    let until = Instant::now() + Duration::from_secs(120);
    while left > 0 && Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            left -= 1;
            records += 1;
            if let Ok(s) = Signal::decode(m.payload().unwrap_or_default()) {
                distinct.insert((s.clip_id, s.stage));
            }
        }
    }
    anyhow::ensure!(left == 0, "{left} signals unread after 120 s");
    Ok((records, distinct.len()))
}

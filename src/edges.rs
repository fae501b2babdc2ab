//! The two edges of the pipeline: submitting clips and reading verdicts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clipguard_pipeline::kafka::KafkaConfig;
use clipguard_pipeline::store::{MediaStore, sha256_hex};
use clipguard_pipeline::topics;
use clipguard_pipeline::trace::{TRACEPARENT, TraceContext};
use clipguard_schemas::media_ref::Location;
use clipguard_schemas::{AgeBand, AudienceContext, ClipSubmitted, MediaRef, Surface, Verdict};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Who a submitted clip is for, from the command line.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    pub age_band: AgeBand,
    pub surface: Surface,
    pub prompt: String,
    pub scene_description: String,
}

/// Files named on the command line, with folders expanded (sorted, non-recursive, hidden files
/// skipped).
pub fn expand_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(|| format!("{}", input.display()))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// A new clip id (UUIDv7: time-ordered).
pub fn new_clip_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Builds the `ClipSubmitted` for a file: inline when small, else copied into the store.
pub async fn clip_for_file(
    path: &Path,
    clip_id: &str,
    store: &MediaStore,
    opts: &SubmitOptions,
) -> anyhow::Result<ClipSubmitted> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let sha256 = sha256_hex(&bytes);
    let size_bytes = bytes.len() as u64;
    let location = if bytes.len() <= store.inline_max_bytes() {
        Location::Inline(bytes)
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Location::Uri(
            store
                .put(&format!("clips/{clip_id}/{name}"), bytes.into())
                .await?,
        )
    };
    Ok(ClipSubmitted {
        clip_id: clip_id.to_string(),
        media: Some(MediaRef {
            location: Some(location),
            sha256,
            size_bytes,
            content_type: String::new(),
        }),
        audience: Some(AudienceContext {
            age_band: opts.age_band as i32,
            surface: opts.surface as i32,
            ..Default::default()
        }),
        prompt: opts.prompt.clone(),
        scene_description: opts.scene_description.clone(),
        source: path.display().to_string(),
        submitted_at_ms: clipguard_pipeline::now_ms(),
        revision: 0,
        attributes: Default::default(),
    })
}

/// Publishes a clip on `clips.submitted` and waits for the broker's acknowledgement.
pub async fn publish(producer: &FutureProducer, clip: &ClipSubmitted) -> anyhow::Result<()> {
    let payload = prost::Message::encode_to_vec(clip);
    anyhow::ensure!(
        payload.len() <= topics::MAX_MESSAGE_BYTES,
        "message for {} is {} bytes, over the limit; lower store.inline_max_bytes",
        clip.source,
        payload.len()
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: TRACEPARENT,
        value: Some(&TraceContext::new_root().header()),
    });
    let record = FutureRecord::to(topics::SUBMITTED)
        .key(&clip.clip_id)
        .payload(&payload)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing {}: {e}", clip.source))?;
    Ok(())
}

/// Where a verdict reader starts.
#[derive(Debug, Clone, Copy)]
pub enum From {
    Beginning,
    End,
}

/// A group-less reader of `clips.verdicts`, assigned every partition.
pub async fn verdict_reader(
    kafka: &KafkaConfig,
    from: From,
) -> anyhow::Result<(StreamConsumer, HashMap<i32, i64>)> {
    topic_reader(kafka, topics::VERDICTS, from).await
}

/// A group-less reader of `topic`, assigned every partition; also returns, for each partition
/// with something to read, the offset its end had when the reader started.
pub async fn topic_reader(
    kafka: &KafkaConfig,
    topic: &'static str,
    from: From,
) -> anyhow::Result<(StreamConsumer, HashMap<i32, i64>)> {
    let mut cc = kafka.client_config();
    cc.set(
        "group.id",
        format!("clipguard-reader-{}", uuid::Uuid::now_v7()),
    )
    .set("enable.auto.commit", "false")
    .set("fetch.wait.max.ms", "10")
    .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cc.create()?;
    let (consumer, ends) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .with_context(|| format!("no {topic} topic on the broker"))?;
        anyhow::ensure!(
            !t.partitions().is_empty(),
            "{topic} has no partitions (topics not created?)"
        );
        let mut list = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            let start = match from {
                From::Beginning => low,
                From::End => high,
            };
            list.add_partition_offset(topic, p.id(), Offset::Offset(start))?;
            if start < high {
                ends.insert(p.id(), high);
            }
        }
        consumer.assign(&list)?;
        Ok((consumer, ends))
    })
    .await??;
    Ok((consumer, ends))
}

/// Reads verdicts until every partition reached `ends` (when given) or `idle` passes without
/// a message, calling `on` for each.
pub async fn read_verdicts(
    consumer: &StreamConsumer,
    ends: Option<&HashMap<i32, i64>>,
    idle: Option<Duration>,
    mut on: impl FnMut(Verdict) -> bool,
) -> anyhow::Result<()> {
    read_topic(
        consumer,
        ends,
        idle,
        |payload| match prost::Message::decode(payload) {
            Ok(v) => on(v),
            Err(_) => true,
        },
    )
    .await
}

/// Reads messages until every partition reached `ends` (when given) or `idle` passes without
/// a message, calling `on` with each payload (until it returns false).
pub async fn read_topic(
    consumer: &StreamConsumer,
    ends: Option<&HashMap<i32, i64>>,
    idle: Option<Duration>,
    mut on: impl FnMut(&[u8]) -> bool,
) -> anyhow::Result<()> {
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let done = |positions: &HashMap<i32, i64>| {
        ends.is_some_and(|ends| {
            ends.iter()
                .all(|(p, end)| positions.get(p).is_some_and(|o| o + 1 >= *end))
        })
    };
    if done(&positions) {
        return Ok(());
    }
    let mut stream = consumer.stream();
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(()),
            },
            None => stream.next().await,
        };
        let Some(msg) = next else { return Ok(()) };
        let msg = msg?;
        positions.insert(msg.partition(), msg.offset());
        if let Some(payload) = msg.payload()
            && !on(payload)
        {
            return Ok(());
        }
        if done(&positions) {
            return Ok(());
        }
    }
}

//! The two edges of the pipeline, as generators and enforcement services use them: a file
//! becomes a `ClipSubmitted` (inline or by claim check) published on `clips.submitted`, and
//! verdicts (or any topic) are read back by a group-less reader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clipguard_schemas::media_ref::Location;
use clipguard_schemas::{AgeBand, AudienceContext, ClipSubmitted, MediaRef, Surface, Verdict};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::PipelineError;
use crate::kafka::KafkaConfig;
use crate::store::{MediaStore, sha256_hex};
use crate::topics;
use crate::trace::{TRACEPARENT, TraceContext};

/// Who a submitted clip is for, from the command line.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    pub age_band: AgeBand,
    pub surface: Surface,
    pub prompt: String,
    pub scene_description: String,
    /// Ids of real people who consented to their likeness being used by the requester.
    pub consented_likeness_ids: Vec<String>,
    /// Ids of real people the generator knows appear in the clip.
    pub depicted_likeness_ids: Vec<String>,
}

/// Files named on the command line, with folders expanded (sorted, non-recursive, hidden files
/// skipped).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, PipelineError> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| PipelineError::file(input, e))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| PipelineError::file(input, e))?
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

/// Builds the `ClipSubmitted` for a file: inline when small, else copied into the store. A
/// file over `max_bytes` (the media stage's limit) is not read at all: the message names it by
/// its `file://` URI and size, and the media stage refuses it by size without fetching it.
pub async fn clip_for_file(
    path: &Path,
    clip_id: &str,
    store: &MediaStore,
    opts: &SubmitOptions,
    max_bytes: u64,
) -> Result<ClipSubmitted, PipelineError> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| PipelineError::file(path, e))?
        .len();
    if size > max_bytes {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let media = MediaRef {
            location: Some(Location::Uri(format!("file://{}", absolute.display()))),
            size_bytes: size,
            ..Default::default()
        };
        return Ok(submission(path, clip_id, media, opts));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| PipelineError::file(path, e))?;
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
    let media = MediaRef {
        location: Some(location),
        sha256,
        size_bytes,
        content_type: String::new(),
    };
    Ok(submission(path, clip_id, media, opts))
}

/// The message for `path`'s media, with who it is for.
fn submission(path: &Path, clip_id: &str, media: MediaRef, opts: &SubmitOptions) -> ClipSubmitted {
    ClipSubmitted {
        clip_id: clip_id.to_string(),
        media: Some(media),
        audience: Some(AudienceContext {
            age_band: opts.age_band as i32,
            surface: opts.surface as i32,
            consented_likeness_ids: opts.consented_likeness_ids.clone(),
            depicted_likeness_ids: opts.depicted_likeness_ids.clone(),
        }),
        prompt: opts.prompt.clone(),
        scene_description: opts.scene_description.clone(),
        source: path.display().to_string(),
        submitted_at_ms: crate::now_ms(),
        revision: 0,
        attributes: Default::default(),
    }
}

/// Publishes a clip on `clips.submitted` and waits for the broker's acknowledgement.
pub async fn publish(producer: &FutureProducer, clip: &ClipSubmitted) -> Result<(), PipelineError> {
    let payload = prost::Message::encode_to_vec(clip);
    if payload.len() > topics::MAX_MESSAGE_BYTES {
        return Err(PipelineError::Config(vec![format!(
            "message for {} is {} bytes, over the limit of {}; lower store.inline_max_bytes",
            clip.source,
            payload.len(),
            topics::MAX_MESSAGE_BYTES
        )]));
    }
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
        .map_err(|(e, _)| PipelineError::Kafka(e))?;
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
) -> Result<(StreamConsumer, HashMap<i32, i64>), PipelineError> {
    topic_reader(kafka, topics::VERDICTS, from).await
}

/// A group-less reader of `topic`, assigned every partition; also returns, for each partition
/// with something to read, the offset its end had when the reader started.
pub async fn topic_reader(
    kafka: &KafkaConfig,
    topic: &'static str,
    from: From,
) -> Result<(StreamConsumer, HashMap<i32, i64>), PipelineError> {
    let mut cc = kafka.client_config();
    cc.set(
        "group.id",
        format!("clipguard-reader-{}", uuid::Uuid::now_v7()),
    )
    .set("enable.auto.commit", "false")
    .set("fetch.wait.max.ms", "10")
    .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cc.create()?;
    let (consumer, ends) = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| PipelineError::Topic(format!("no {topic} topic on the broker")))?;
        if t.partitions().is_empty() {
            return Err(PipelineError::Topic(format!(
                "{topic} has no partitions (topics not created?)"
            )));
        }
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
    .await
    .map_err(|e| PipelineError::Internal(format!("topic reader setup: {e}")))??;
    Ok((consumer, ends))
}

/// Reads verdicts until every partition reached `ends` (when given) or `idle` passes without
/// a message, calling `on` for each.
pub async fn read_verdicts(
    consumer: &StreamConsumer,
    ends: Option<&HashMap<i32, i64>>,
    idle: Option<Duration>,
    mut on: impl FnMut(Verdict) -> bool,
) -> Result<(), PipelineError> {
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

/// How long a reader keeps retrying while every read fails.
const READ_ERRORS_FOR: Duration = Duration::from_secs(60);

/// Reads messages until every partition reached `ends` (when given) or `idle` passes without
/// a message, calling `on` with each payload (until it returns false).
pub async fn read_topic(
    consumer: &StreamConsumer,
    ends: Option<&HashMap<i32, i64>>,
    idle: Option<Duration>,
    mut on: impl FnMut(&[u8]) -> bool,
) -> Result<(), PipelineError> {
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
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(()),
            },
            None => stream.next().await,
        };
        let Some(msg) = next else { return Ok(()) };
        // The client reconnects by itself (a broker restart): errors end the read only when
        // nothing but errors came for a minute.
        let msg = match msg {
            Ok(m) => {
                failing_since = None;
                m
            }
            Err(err) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= READ_ERRORS_FOR {
                    return Err(err.into());
                }
                tracing::warn!(error = %err, "reading from the brokers failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
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

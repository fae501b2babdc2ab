//! Every stage in one process without a broker: records routed by topic through the stages the
//! registry builds ([`Topology`]), each clip submitted as `clipguard submit` would submit it.
//! `clipguard scan` moderates files this way; `clipguard transcribe` runs the media and
//! transcribe stages alone.

use std::path::Path;

use clipguard_pipeline::edges::{self, SubmitOptions};
use clipguard_pipeline::inproc::Topology;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::{Record, topics};
use clipguard_schemas::names::stage;
use clipguard_schemas::{MediaExtract, Rendition, Signal, Transcript, Verdict};

use crate::registry::Registry;
use crate::{Config, TopologyError};

/// Stages wired in process, and the store clips are submitted through.
#[derive(Debug)]
pub struct Local {
    topology: Topology,
    store: MediaStore,
    max_bytes: u64,
}

impl Local {
    /// Builds `names` of `registry` from `cfg`. The monitor, when among them, waits for every
    /// other stage named that signals (whatever `monitor.expected_stages` says: nothing else
    /// can answer in this process).
    pub fn with(registry: &Registry, cfg: &Config, names: &[&str]) -> Result<Self, TopologyError> {
        let mut cfg = cfg.clone();
        cfg.monitor.expected_stages.clear();
        let mut topology = Topology::new();
        for built in registry.build_all(names, &cfg)? {
            built.join(&mut topology);
        }
        Ok(Local {
            topology,
            store: MediaStore::open(&cfg.store)?,
            max_bytes: cfg.media.max_bytes,
        })
    }

    /// [`Local::with`] the standard registry.
    pub fn new(cfg: &Config, names: &[&str]) -> Result<Self, TopologyError> {
        Self::with(&Registry::default(), cfg, names)
    }

    /// Every stage but review (a scan answers at once; nobody reviews its clips): what
    /// `clipguard scan` runs.
    pub fn all(cfg: &Config) -> Result<Self, TopologyError> {
        let registry = Registry::default();
        let names: Vec<&str> = registry
            .names()
            .into_iter()
            .filter(|n| *n != stage::REVIEW)
            .collect();
        Self::with(&registry, cfg, &names)
    }

    /// Submits `path` and runs the stages until nothing is left in flight; returns every record
    /// that passed.
    pub async fn submit(
        &mut self,
        path: &Path,
        opts: &SubmitOptions,
    ) -> Result<Vec<Record>, TopologyError> {
        let clip_id = edges::new_clip_id();
        let clip = edges::clip_for_file(path, &clip_id, &self.store, opts, self.max_bytes).await?;
        let record = Record::encode(topics::SUBMITTED, clip_id, &clip);
        Ok(self.topology.run(vec![record]).await)
    }

    /// The verdict for `path` (every stage and the monitor must be in this topology).
    pub async fn scan(
        &mut self,
        path: &Path,
        opts: &SubmitOptions,
    ) -> Result<Verdict, TopologyError> {
        Ok(self.scan_released(path, opts).await?.0)
    }

    /// The verdict for `path` and, when the release stage is in this topology and made one,
    /// the clip's rendition record.
    pub async fn scan_released(
        &mut self,
        path: &Path,
        opts: &SubmitOptions,
    ) -> Result<(Verdict, Option<Rendition>), TopologyError> {
        let records = self.submit(path, opts).await?;
        let verdict = decode_one(&records, topics::VERDICTS).ok_or_else(|| {
            TopologyError::Clip(format!(
                "{}: no verdict came out of the stages",
                path.display()
            ))
        })?;
        Ok((verdict, decode_one(&records, topics::RENDITIONS)))
    }

    /// The transcript of `path`'s audio and the transcribe stage's signal (the media and
    /// transcribe stages must be in this topology). A clip the media stage could not decode is
    /// an error with the media stage's reason.
    pub async fn transcribe(&mut self, path: &Path) -> Result<Transcribed, TopologyError> {
        let records = self.submit(path, &SubmitOptions::default()).await?;
        let signals: Vec<Signal> = decode_all(&records, topics::SIGNALS);
        let failure = |s: &Signal| {
            s.error
                .as_ref()
                .map(|e| format!("{}: {}", path.display(), e.message))
        };
        if let Some(why) = signals
            .iter()
            .filter(|s| s.stage == stage::MEDIA || s.stage == stage::TRANSCRIBE)
            .find_map(failure)
        {
            return Err(TopologyError::Clip(why));
        }
        let signal = signals
            .into_iter()
            .find(|s| s.stage == stage::TRANSCRIBE)
            .ok_or_else(|| {
                TopologyError::Clip(format!(
                    "{}: the transcribe stage did not answer",
                    path.display()
                ))
            })?;
        let transcript = decode_one(&records, topics::TRANSCRIPTS).unwrap_or_default();
        let audio =
            decode_one::<MediaExtract>(&records, topics::MEDIA).is_some_and(|m| m.audio.is_some());
        Ok(Transcribed {
            transcript,
            signal,
            audio,
        })
    }
}

/// What [`Local::transcribe`] found.
#[derive(Debug, Clone)]
pub struct Transcribed {
    pub transcript: Transcript,
    /// The transcribe stage's signal (its reasons say whether the transcript was truncated).
    pub signal: Signal,
    /// Whether the clip had an audio stream.
    pub audio: bool,
}

fn decode_all<M: prost::Message + Default>(records: &[Record], topic: &str) -> Vec<M> {
    records
        .iter()
        .filter(|r| r.topic == topic)
        .filter_map(|r| M::decode(r.payload.as_slice()).ok())
        .collect()
}

fn decode_one<M: prost::Message + Default>(records: &[Record], topic: &str) -> Option<M> {
    decode_all(records, topic).into_iter().next()
}

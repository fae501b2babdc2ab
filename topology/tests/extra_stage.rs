//! A stage that is not one of clipguard's, added with one registry entry: the hosts subscribe it
//! by its node and the monitor waits for its signal, with no other edit anywhere.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clipguard_pipeline::edges::SubmitOptions;
use clipguard_pipeline::graph::Node;
use clipguard_pipeline::{ProcessCtx, Record, Stage, StageError, now_ms, topics};
use clipguard_schemas::names::{category, stage};
use clipguard_schemas::{CategoryScore, Decision, Evidence, MediaExtract, Signal, Verdict};
use clipguard_topology::local::Local;
use clipguard_topology::registry::{Built, Context, Entry, Registry};
use clipguard_topology::{Config, TopologyError};
use tonic::service::Routes;

const WATERMARK: &str = "watermark";

/// Reads the media stage's extract and says whether a burned-in watermark shows violence
/// (here: always, strongly), or never answers at all.
struct Watermark {
    answers: bool,
}

impl Stage for Watermark {
    type Input = MediaExtract;
    type Output = Vec<Record>;

    fn name(&self) -> &'static str {
        WATERMARK
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    async fn process(
        &self,
        input: MediaExtract,
        ctx: &ProcessCtx,
    ) -> Result<Vec<Record>, StageError> {
        if !self.answers {
            return Ok(Vec::new());
        }
        let signal = Signal {
            clip_id: ctx.clip_id.clone(),
            stage: WATERMARK.into(),
            context: input.context.clone(),
            scores: vec![CategoryScore {
                category: category::VIOLENCE_GORE.into(),
                score: 0.99,
                evidence: vec![Evidence {
                    kind: "frame".into(),
                    start_s: 0.0,
                    end_s: 1.0,
                    detail: "the watermark stage saw it".into(),
                }],
            }],
            produced_at_ms: now_ms(),
            ..Default::default()
        };
        Ok(vec![Record::signal(&ctx.clip_id, &signal)])
    }
}

/// The one entry: the stage's place in the pipeline and how to build it.
fn entry(build: fn(&Context<'_>) -> Result<Built, TopologyError>) -> Entry {
    Entry {
        node: Node {
            stage: WATERMARK,
            consumes: topics::MEDIA,
            produces: &[topics::SIGNALS, topics::DLQ],
            state: None,
        },
        build,
    }
}

fn answering(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    ctx.built(
        Arc::new(Watermark { answers: true }),
        Routes::default(),
        vec![],
    )
}

fn silent(ctx: &Context<'_>) -> Result<Built, TopologyError> {
    ctx.built(
        Arc::new(Watermark { answers: false }),
        Routes::default(),
        vec![],
    )
}

/// A short real clip, encoded by GStreamer.
fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    let pipeline = format!(
        "videotestsrc num-buffers=30 ! video/x-raw,width=160,height=120,framerate=15/1 ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
        path.display()
    );
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .expect("gst-launch-1.0 (run scripts/setup.sh)");
    assert!(status.success(), "gst-launch-1.0 {pipeline}");
    path
}

fn config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.store.url = dir.join("store").display().to_string();
    cfg.monitor.timeout_s = 2.0;
    cfg
}

/// The verdict on a real clip through media, the watermark stage built by `build`, and the
/// monitor, in process.
async fn scan_with(build: fn(&Context<'_>) -> Result<Built, TopologyError>) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::default().with(entry(build));
    let names = [stage::MEDIA, WATERMARK, stage::MONITOR];
    let mut local = Local::with(&registry, &config(dir.path()), &names).unwrap();
    local
        .scan(&clip(dir.path()), &SubmitOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_stage_is_awaited_and_its_signal_decides() {
    let v = scan_with(answering).await;
    assert!(v.missing_stages.is_empty(), "{v:?}");
    assert!(v.stages.contains(&WATERMARK.to_string()), "{v:?}");
    assert_eq!(v.decision(), Decision::Block, "{}", v.rationale);
    let violence = v
        .categories
        .iter()
        .find(|c| c.category == category::VIOLENCE_GORE)
        .unwrap();
    assert!(
        violence
            .evidence
            .iter()
            .any(|e| e.detail == "the watermark stage saw it"),
        "{violence:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_waits_for_an_extra_stage_that_never_answers() {
    let v = scan_with(silent).await;
    assert_eq!(v.missing_stages, vec![WATERMARK.to_string()], "{v:?}");
    assert_ne!(v.decision(), Decision::Allow, "{}", v.rationale);
    assert!(v.reasons.contains(&format!("timeout:{WATERMARK}")), "{v:?}");
}

/// A stage whose input no stage produces is refused when the pipeline is built, by name.
#[test]
fn a_stage_fed_by_nothing_is_refused_at_build() {
    let registry = Registry::default().with(entry(answering));
    let e = registry
        .build_all(&[WATERMARK, stage::MONITOR], &Config::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "stage `watermark` consumes `clips.media`, which no stage produces"
    );
}

/// A stage that calls itself by another name than its node's is refused: its consumer group,
/// metrics and signals would not be the node's, and the monitor would wait for a name nobody
/// signals.
#[test]
fn a_stage_named_unlike_its_node_is_refused_at_build() {
    let mut misnamed = entry(answering);
    misnamed.node.stage = "overlay";
    let registry = Registry::default().with(misnamed);
    let e = registry
        .build_all(
            &[stage::MEDIA, "overlay", stage::MONITOR],
            &Config::default(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the stage built for `overlay` calls itself `watermark`"
    );
}

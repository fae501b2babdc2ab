//! `clipguard eval`: labelled items through the real decision paths, scored per policy category
//! and audience as `not_unsafe` (unsafe items stopped) and `not_overrefuse` (benign items let
//! through), with 95 % Wilson intervals and a threshold sweep per category.
//!
//! Item kinds: `text` (a prompt, through the prompt check: the text classifier and the policy,
//! the code behind `Moderation.CheckPrompt`), `speech` (the text spoken by espeak-ng over colour
//! bars: media, transcription, the transcript classifier and the monitor, on an embedded broker),
//! `clip` (a video file) and `generated` (a GStreamer test pattern) through the same pipeline.
//! An item is *stopped* for an audience when its decision there is `review` or `block`; an
//! unsafe item counts for `not_unsafe` only when its own category is what stopped it (an unsafe
//! self-harm prompt held as `minors_sexual` is a miss for `self_harm`).
//!
//! This crate owns the `eval/` folder: the labelled sets (`text/`, `speech/`, `video/`) and
//! `targets.toml`, the reference table the report compares with (see `eval/README.md`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clipguard_pipeline::edges::SubmitOptions;
use clipguard_policy::{Action, Audience, Policy};
use clipguard_schemas::{Decision, Verdict};
use clipguard_text::prompt::PromptChecker;
use clipguard_topology::Config;
use clipguard_topology::run::{self, Job, Wait};
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod plots;
pub mod report;
pub mod resume;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The manifests, targets or policy are wrong (every problem listed): the user fixes them.
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A tool the evaluation makes its media with (GStreamer, Festival, espeak-ng) failed or is
    /// missing; `scripts/setup.sh` installs them.
    #[error("{0}")]
    Tool(String),
    /// A plot could not be drawn.
    #[error("plot {0}")]
    Plot(String),
    /// The stages could not be built or run.
    #[error(transparent)]
    Topology(#[from] clipguard_topology::TopologyError),
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::File {
        path: path.display().to_string(),
        source,
    }
}

/// The monitor's deadline during an evaluation (at least).
const EVAL_MONITOR_TIMEOUT_S: f64 = 600.0;

/// Clips in the pipeline at once during an evaluation.
const EVAL_WINDOW: usize = 4;

/// Exit status when a `--targets` table is not met.
pub const TARGETS_MISSED_EXIT: u8 = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    seconds: Option<f64>,
    labels: Vec<String>,
    #[serde(default)]
    near: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    optional: bool,
    /// Speech items: `festival:<voice>` (default `festival:cmu_us_slt_arctic_hts`) or
    /// `espeak-ng[:<voice>]`.
    #[serde(default)]
    voice: Option<String>,
}

/// The voice a speech item is synthesised with by default: Festival's HTS voice of the CMU
/// ARCTIC speaker SLT (Debian `festvox-us-slt-hts`). Whisper tiny.en transcribes it at 8.5 % word
/// error on 80 of the text policy's exemplars, espeak-ng's voices at 29–77 % (the `espeak_wer`
/// example of the transcribe crate): with espeak-ng the spoken set measured the
/// synthesiser's intelligibility more than the pipeline.
pub const DEFAULT_VOICE: &str = "festival:cmu_us_slt_arctic_hts";

/// A speech synthesiser and its voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voice {
    Festival(String),
    Espeak(String),
}

impl Voice {
    pub fn parse(s: &str) -> Option<Voice> {
        let ok = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        };
        match s.split_once(':') {
            Some(("festival", v)) if ok(v) => Some(Voice::Festival(v.to_string())),
            Some(("espeak-ng", v)) if ok(v) => Some(Voice::Espeak(v.to_string())),
            None if s == "espeak-ng" => Some(Voice::Espeak("en".into())),
            _ => None,
        }
    }

    fn tag(&self) -> String {
        match self {
            Voice::Festival(v) => format!("festival:{v}"),
            Voice::Espeak(v) => format!("espeak-ng:{v}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Text(String),
    Speech { text: String, voice: Voice },
    Clip(PathBuf),
    Generated { pattern: String, seconds: f64 },
}

impl Kind {
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Text(_) => "text",
            Kind::Speech { .. } => "speech",
            Kind::Clip(_) => "clip",
            Kind::Generated { .. } => "generated",
        }
    }
}

/// One labelled item.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// The manifest it came from (`text/heldout`).
    pub set: String,
    pub kind: Kind,
    /// Policy categories it violates; empty = benign.
    pub labels: Vec<String>,
    /// For a benign item: the category it is a near miss for.
    pub near: Option<String>,
    pub audience: Audience,
    /// A clip file that may be absent (reference data outside the project): skipped, not an error.
    pub optional: bool,
}

impl Item {
    pub fn benign(&self) -> bool {
        self.labels.is_empty()
    }
}

/// What happened to one item.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Decision per audience, `Audience::ALL` order.
    pub decisions: Option<[Decision; 3]>,
    /// Category scores (highest per category).
    pub scores: BTreeMap<String, f32>,
    /// Per audience (`Audience::ALL` order), the categories whose own decision is `review` or
    /// `block` there: an unsafe item counts as stopped only by its own category.
    pub stopped_by: [BTreeSet<String>; 3],
    pub rationale: String,
    /// Why there is no decision (an error, or a skipped optional item).
    pub error: Option<String>,
    pub skipped: Option<String>,
    /// A category was scored again by the text policy's refining encoder (its uncertain band).
    pub refined: bool,
}

impl Outcome {
    pub fn stopped(&self, a: Audience) -> Option<bool> {
        self.decisions.map(|d| d[a.index()] >= Decision::Review)
    }

    /// Stopped for audience `a` by category `cat` itself (not by another category's score or
    /// a stage error).
    pub fn stopped_in(&self, a: Audience, cat: &str) -> Option<bool> {
        self.decisions
            .map(|d| d[a.index()] >= Decision::Review && self.stopped_by[a.index()].contains(cat))
    }
}

fn set_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
    {
        Some(dir) if !dir.is_empty() => format!("{dir}/{stem}"),
        _ => stem,
    }
}

/// Reads manifests (JSON lines), checking every line; all problems are reported at once as
/// `file:line: problem`.
pub fn load_manifests(paths: &[PathBuf], policy: &Policy) -> Result<Vec<Item>, EvalError> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(file_error(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let set = set_name(path);
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", path.display(), n + 1);
            let raw: RawItem = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if let Some(prev) = ids.insert(raw.id.clone(), at.clone()) {
                problems.push(format!("{at}: id `{}` also at {prev}", raw.id));
            }
            let need = |field: Option<String>, name: &str, problems: &mut Vec<String>| {
                field.filter(|s| !s.trim().is_empty()).or_else(|| {
                    problems.push(format!("{at}: kind `{}` needs `{name}`", raw.kind));
                    None
                })
            };
            let kind = match raw.kind.as_str() {
                "text" => need(raw.text.clone(), "text", &mut problems).map(Kind::Text),
                "speech" => {
                    let voice = raw.voice.as_deref().unwrap_or(DEFAULT_VOICE);
                    let voice = Voice::parse(voice).or_else(|| {
                        problems.push(format!(
                            "{at}: voice `{voice}` is not `festival:<voice>` or `espeak-ng[:<voice>]`"
                        ));
                        None
                    });
                    need(raw.text.clone(), "text", &mut problems)
                        .zip(voice)
                        .map(|(text, voice)| Kind::Speech { text, voice })
                }
                "clip" => {
                    need(raw.path.clone(), "path", &mut problems).map(|p| Kind::Clip(base.join(p)))
                }
                "generated" => need(raw.pattern.clone(), "pattern", &mut problems).map(|pattern| {
                    Kind::Generated {
                        pattern,
                        seconds: raw.seconds.unwrap_or(3.0).clamp(0.5, 60.0),
                    }
                }),
                other => {
                    problems.push(format!(
                        "{at}: kind `{other}` is not one of text, speech, clip, generated"
                    ));
                    None
                }
            };
            for c in raw.labels.iter().chain(raw.near.iter()) {
                if !policy.categories.contains_key(c) {
                    problems.push(format!(
                        "{at}: `{c}` is not a category of policy {}",
                        policy.version
                    ));
                }
            }
            if raw.near.is_some() && !raw.labels.is_empty() {
                problems.push(format!("{at}: `near` is for benign items (labels [])"));
            }
            let audience = match raw.audience.as_deref() {
                None => Some(Audience::PublicFeed),
                Some(a) => Audience::parse(a).or_else(|| {
                    problems.push(format!(
                        "{at}: audience `{a}` is not one of adult, under_18, public_feed"
                    ));
                    None
                }),
            };
            if let (Some(kind), Some(audience)) = (kind, audience) {
                items.push(Item {
                    id: raw.id,
                    set: set.clone(),
                    kind,
                    labels: raw.labels,
                    near: raw.near,
                    audience,
                    optional: raw.optional,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(EvalError::Input(format!(
            "manifest problems:\n  {}",
            problems.join("\n  ")
        )))
    }
}

/// Runs text items through the prompt check, for every audience.
fn run_text(
    items: &[Item],
    checker: &PromptChecker,
    out: &mut [Outcome],
    store: &mut resume::ResultStore,
    keys: &[String],
) {
    for (i, item) in items.iter().enumerate() {
        let Kind::Text(text) = &item.kind else {
            continue;
        };
        if out[i].decisions.is_some() {
            continue;
        }
        let mut decisions = [Decision::Allow; 3];
        let mut scores = BTreeMap::new();
        let mut stopped_by: [BTreeSet<String>; 3] = Default::default();
        let mut rationale = String::new();
        let mut refined = false;
        // Classified once, decided for each audience.
        for (a, r) in Audience::ALL
            .into_iter()
            .zip(checker.check_every_audience(text))
        {
            // The prompt check answers allow / block; a category it holds for review stops the
            // item too (the clip would not be shown without a person).
            let d = r
                .categories
                .iter()
                .map(|c| c.decision())
                .chain([r.decision()])
                .max()
                .unwrap_or(Decision::Allow);
            decisions[a.index()] = d;
            for c in &r.categories {
                refined |= is_refined(&c.evidence);
                scores.insert(c.category.clone(), c.score);
                if c.decision() >= Decision::Review {
                    stopped_by[a.index()].insert(c.category.clone());
                }
            }
            if a == item.audience {
                rationale = r.rationale;
            }
        }
        out[i] = Outcome {
            decisions: Some(decisions),
            scores,
            stopped_by,
            rationale,
            refined,
            ..Default::default()
        };
        store.put(&keys[i], &out[i]);
    }
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

fn gst(args: &[String]) -> Result<(), EvalError> {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(args)
        .output()
        .map_err(|e| {
            EvalError::Tool(format!(
                "running gst-launch-1.0 (scripts/setup.sh installs it): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(EvalError::Tool(format!(
            "gst-launch-1.0 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn split(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Seconds of audio in a PCM WAV file (espeak-ng's output).
fn wav_seconds(path: &Path) -> Result<f64, EvalError> {
    let bytes = std::fs::read(path).map_err(file_error(path))?;
    let bad = |why: &str| EvalError::Tool(format!("{}: {why}", path.display()));
    if bytes.len() <= 44 || &bytes[0..4] != b"RIFF" {
        return Err(bad("not a WAV file"));
    }
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as f64;
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]) as f64;
    let bits = u16::from_le_bytes([bytes[34], bytes[35]]) as f64;
    if rate <= 0.0 || channels <= 0.0 || bits <= 0.0 {
        return Err(bad("bad WAV header"));
    }
    Ok((bytes.len() - 44) as f64 / (rate * channels * bits / 8.0))
}

/// Synthesises `text` into a WAV file.
fn speak(voice: &Voice, text: &str, wav: &Path, work: &Path) -> Result<(), EvalError> {
    let status = match voice {
        Voice::Festival(v) => {
            let txt = wav.with_extension("txt");
            std::fs::write(&txt, text).map_err(file_error(&txt))?;
            let status = Command::new("text2wave")
                .arg("-eval")
                .arg(format!("(voice_{v})"))
                .arg("-o")
                .arg(wav)
                .arg(&txt)
                .current_dir(work)
                .status()
                .map_err(|e| {
                    EvalError::Tool(format!(
                        "running text2wave (Festival; scripts/setup.sh installs it): {e}"
                    ))
                })?;
            let _ = std::fs::remove_file(&txt);
            status
        }
        Voice::Espeak(v) => Command::new("espeak-ng")
            .args(["-v", v, "-s", "150", "-w"])
            .arg(wav)
            .arg(text)
            .status()
            .map_err(|e| {
                EvalError::Tool(format!(
                    "running espeak-ng (scripts/setup.sh installs it): {e}"
                ))
            })?,
    };
    if !status.success() {
        return Err(EvalError::Tool(format!(
            "{} failed ({status})",
            voice.tag()
        )));
    }
    if !wav.is_file() {
        return Err(EvalError::Tool(format!(
            "{} wrote no audio (is the voice installed?)",
            voice.tag()
        )));
    }
    Ok(())
}

/// Makes (or reuses) the clip for a speech or generated item under `work`.
fn media_for(item: &Item, work: &Path) -> Result<PathBuf, EvalError> {
    match &item.kind {
        Kind::Clip(p) => Ok(p.clone()),
        Kind::Speech { text, voice } => {
            let key = format!("{}\n{text}", voice.tag());
            let out = work.join(format!("{}-{}.mp4", item.id, short_hash(&key)));
            if out.is_file() {
                return Ok(out);
            }
            let wav = work.join(format!("{}.wav", item.id));
            speak(voice, text, &wav, work)?;
            let frames = (wav_seconds(&wav)? * 25.0).ceil() as u64 + 1;
            let tmp = out.with_extension("mp4.tmp");
            let mut args = split("mp4mux name=mux faststart=true ! filesink");
            args.push(format!("location={}", tmp.display()));
            args.extend(split(&format!(
                "videotestsrc pattern=smpte num-buffers={frames} ! \
                 video/x-raw,width=320,height=240,framerate=25/1,format=I420 ! \
                 x264enc speed-preset=ultrafast tune=zerolatency key-int-max=25 ! h264parse ! mux. filesrc"
            )));
            args.push(format!("location={}", wav.display()));
            args.extend(split(
                "! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! mux.",
            ));
            gst(&args)?;
            std::fs::rename(&tmp, &out).map_err(file_error(&out))?;
            let _ = std::fs::remove_file(&wav);
            Ok(out)
        }
        Kind::Generated { pattern, seconds } => {
            let out = work.join(format!(
                "{}-{}.mp4",
                item.id,
                short_hash(&format!("{pattern}{seconds}"))
            ));
            if out.is_file() {
                return Ok(out);
            }
            let tmp = out.with_extension("mp4.tmp");
            let frames = (seconds * 25.0).round() as u64;
            let mut args = split(&format!(
                "videotestsrc pattern={pattern} num-buffers={frames} ! \
                 video/x-raw,width=320,height=240,framerate=25/1,format=I420 ! \
                 x264enc speed-preset=ultrafast key-int-max=25 ! h264parse ! mp4mux faststart=true ! filesink"
            ));
            args.push(format!("location={}", tmp.display()));
            gst(&args)?;
            std::fs::rename(&tmp, &out).map_err(file_error(&out))?;
            Ok(out)
        }
        Kind::Text(_) => Err(EvalError::Input(
            "text items do not go through the media pipeline".into(),
        )),
    }
}

fn submit_options(a: Audience) -> SubmitOptions {
    let (age_band, surface) = a.context();
    SubmitOptions {
        age_band,
        surface,
        ..Default::default()
    }
}

/// Whether a category's evidence says the refining encoder scored it.
fn is_refined(evidence: &[clipguard_schemas::Evidence]) -> bool {
    evidence
        .iter()
        .any(|e| e.kind == clipguard_text::REFINED_KIND)
}

fn verdict_outcome(v: &Verdict) -> Outcome {
    if !v.missing_stages.is_empty() {
        return Outcome {
            error: Some(format!(
                "decided by the deadline, not the evidence: no answer from {}",
                v.missing_stages.join(", ")
            )),
            rationale: v.rationale.clone(),
            ..Default::default()
        };
    }
    let a = v.audiences.unwrap_or_default();
    let d = |x: i32| Decision::try_from(x).unwrap_or(Decision::Review);
    let mut scores = BTreeMap::new();
    let mut stopped_by: [BTreeSet<String>; 3] = Default::default();
    let mut refined = false;
    for c in &v.categories {
        refined |= is_refined(&c.evidence);
        let e = scores.entry(c.category.clone()).or_insert(0.0f32);
        *e = e.max(c.score);
        let ca = c.audiences.unwrap_or_default();
        for (k, x) in [ca.adult, ca.under_18, ca.public_feed]
            .into_iter()
            .enumerate()
        {
            if d(x) >= Decision::Review {
                stopped_by[k].insert(c.category.clone());
            }
        }
    }
    Outcome {
        decisions: Some([d(a.adult), d(a.under_18), d(a.public_feed)]),
        scores,
        stopped_by,
        rationale: v.rationale.clone(),
        refined,
        ..Default::default()
    }
}

/// Runs clip, speech and generated items through every stage on an embedded broker.
async fn run_media(
    cfg: &Config,
    items: &[Item],
    work: &Path,
    out: &mut [Outcome],
    store: &mut resume::ResultStore,
    keys: &[String],
) -> Result<(), EvalError> {
    let mut jobs = Vec::new();
    let mut job_item = Vec::new();
    let mut earlier = 0usize;
    for (i, item) in items.iter().enumerate() {
        if matches!(item.kind, Kind::Text(_)) {
            continue;
        }
        if out[i].decisions.is_some() {
            earlier += 1;
            continue;
        }
        if let Kind::Clip(p) = &item.kind
            && !p.is_file()
        {
            if item.optional {
                out[i].skipped = Some(format!("{} is absent", p.display()));
            } else {
                out[i].error = Some(format!("{} does not exist", p.display()));
            }
            continue;
        }
        match media_for(item, work) {
            Ok(path) => {
                jobs.push(Job {
                    path,
                    opts: submit_options(item.audience),
                });
                job_item.push(i);
            }
            Err(e) => out[i].error = Some(format!("making the clip: {e:#}")),
        }
    }
    if jobs.is_empty() {
        if earlier > 0 {
            eprintln!("eval: all {earlier} clips decided by earlier runs");
        }
        return Ok(());
    }
    eprintln!(
        "eval: {} clips through every stage ({earlier} decided by earlier runs)",
        jobs.len()
    );
    let total = jobs.len();
    let mut done = 0usize;
    // The evaluation measures decisions from evidence: the monitor waits long enough for every
    // stage on a busy machine, and a verdict decided by the deadline anyway is reported as not
    // decided rather than counted.
    let mut cfg = cfg.clone();
    cfg.monitor.timeout_s = cfg.monitor.timeout_s.max(EVAL_MONITOR_TIMEOUT_S);
    let idle = cfg.media.deadline_s + cfg.monitor.timeout_s + 60.0;
    let outcome = run::moderate(
        cfg,
        None,
        None,
        &jobs,
        // A few clips at a time: the evaluation measures decisions, not how a two-core machine
        // copes with a burst (a burst past capacity fails closed at the monitor's deadline).
        Some(EVAL_WINDOW),
        Wait::Idle(Duration::from_secs_f64(idle)),
        |j, v| {
            let i = job_item[j];
            out[i] = verdict_outcome(v);
            // A verdict the reasoning model was meant to decide but did not (timeout, server
            // down) is not kept: a rerun asks again.
            if v.fallback.is_empty() {
                store.put(&keys[i], &out[i]);
            }
            done += 1;
            if done.is_multiple_of(10) || done == total {
                eprintln!("eval: {done}/{total} clips decided");
            }
        },
    )
    .await?;
    for j in outcome.missing {
        out[job_item[j]].error = Some("no verdict".into());
    }
    Ok(())
}

/// `successes` of `n`, with the 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub k: usize,
    pub n: usize,
}

impl Rate {
    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.k as f64 / self.n as f64)
    }

    /// The 95 % Wilson score interval.
    pub fn wilson(&self) -> Option<(f64, f64)> {
        if self.n == 0 {
            return None;
        }
        let z = 1.959_963_984_540_054_f64;
        let n = self.n as f64;
        let p = self.k as f64 / n;
        let denom = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / denom;
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
        Some(((centre - half).max(0.0), (centre + half).min(1.0)))
    }
}

/// One category's numbers in one set for one audience.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub not_unsafe: Rate,
    pub not_overrefuse: Rate,
    /// The policy allows this category for this audience: not_unsafe does not apply.
    pub allowed_by_policy: bool,
}

/// One point of a threshold sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepPoint {
    pub threshold: f32,
    pub not_unsafe: Rate,
    pub not_overrefuse: Rate,
}

/// Everything the report shows.
#[derive(Debug)]
pub struct Results {
    pub policy_version: String,
    pub items: Vec<Item>,
    pub outcomes: Vec<Outcome>,
    /// set → category → audience index → cell.
    pub cells: BTreeMap<String, BTreeMap<String, [Cell; 3]>>,
    /// set → all benign items, per audience.
    pub benign: BTreeMap<String, [Rate; 3]>,
    /// set → category → sweep.
    pub sweeps: BTreeMap<String, BTreeMap<String, Vec<SweepPoint>>>,
    /// category → policy threshold per audience.
    pub thresholds: BTreeMap<String, [f32; 3]>,
    /// The reasoning cascade's uncertain band and, per set, the items with a category score
    /// inside it: what `monitor.reasoning.consult = "uncertain"` would send to the model.
    pub cascade: Option<([f32; 2], BTreeMap<String, Rate>)>,
    /// Per set, the items of which the text policy's refining encoder scored a category again.
    pub refined: BTreeMap<String, Rate>,
    /// set → audience index → the category confusion matrix.
    pub confusion: BTreeMap<String, [Confusion; 3]>,
}

/// What stopped the items of each label, for one audience: row = an item's label (each label
/// of an item with several; `benign` for benign items), column = a category whose own decision
/// stopped it there. The diagonal is a category stopping its own items; everything else is a
/// category confused for another (adult sexual content flagged `minors_sexual`), or, in the
/// `benign` row, over-refusal by that category.
#[derive(Debug, Clone, Default)]
pub struct Confusion {
    pub rows: BTreeMap<String, ConfusionRow>,
}

/// One label's items and what stopped them.
#[derive(Debug, Clone, Default)]
pub struct ConfusionRow {
    /// Items with the label.
    pub n: usize,
    /// Category → items it stopped (its own label's, or ones it is not a label of).
    pub stopped: BTreeMap<String, usize>,
    /// Category → items that also carry that category as a label: not counted for it either
    /// way (its stopping them is right, not confusion).
    pub also_labelled: BTreeMap<String, usize>,
}

/// The row of benign items in a [`Confusion`].
pub const BENIGN_ROW: &str = "benign";

impl Confusion {
    /// Items of `row` that `column` stopped, of those `column` is not also a label of.
    pub fn rate(&self, row: &str, column: &str) -> Rate {
        let Some(r) = self.rows.get(row) else {
            return Rate::default();
        };
        let also = if column == row {
            0
        } else {
            r.also_labelled.get(column).copied().unwrap_or(0)
        };
        Rate {
            k: r.stopped.get(column).copied().unwrap_or(0),
            n: r.n - also,
        }
    }

    /// One item in `row`; `labels` are all of the item's labels: a category among them that
    /// stopped it is not confused for `row` (a sexual item with a real person's likeness is
    /// rightly stopped as `sexual_likeness`).
    fn add(&mut self, row: &str, labels: &[String], stopped_by: &BTreeSet<String>) {
        let r = self.rows.entry(row.to_string()).or_default();
        r.n += 1;
        for l in labels.iter().filter(|l| *l != row) {
            *r.also_labelled.entry(l.clone()).or_default() += 1;
        }
        for c in stopped_by {
            if c == row || !labels.contains(c) {
                *r.stopped.entry(c.clone()).or_default() += 1;
            }
        }
    }
}

pub fn score(items: Vec<Item>, outcomes: Vec<Outcome>, policy: &Policy) -> Results {
    let mut cells: BTreeMap<String, BTreeMap<String, [Cell; 3]>> = BTreeMap::new();
    let mut benign: BTreeMap<String, [Rate; 3]> = BTreeMap::new();
    let sets: BTreeSet<&str> = items.iter().map(|i| i.set.as_str()).collect();
    let thresholds: BTreeMap<String, [f32; 3]> = policy
        .categories
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                [
                    c.adult.threshold,
                    c.under_18.threshold,
                    c.public_feed.threshold,
                ],
            )
        })
        .collect();
    let mut sweeps: BTreeMap<String, BTreeMap<String, Vec<SweepPoint>>> = BTreeMap::new();
    let mut confusion: BTreeMap<String, [Confusion; 3]> = BTreeMap::new();
    for set in sets {
        let members: Vec<(&Item, &Outcome)> = items
            .iter()
            .zip(&outcomes)
            .filter(|(i, o)| i.set == set && o.decisions.is_some())
            .collect();
        let categories: BTreeSet<&str> = members
            .iter()
            .flat_map(|(i, _)| i.labels.iter().chain(i.near.iter()))
            .map(String::as_str)
            .collect();
        let mut per_cat = BTreeMap::new();
        let mut per_sweep = BTreeMap::new();
        for cat in categories {
            let unsafe_items: Vec<&Outcome> = members
                .iter()
                .filter(|(i, _)| i.labels.iter().any(|l| l == cat))
                .map(|(_, o)| *o)
                .collect();
            let near: Vec<&Outcome> = members
                .iter()
                .filter(|(i, _)| i.benign() && i.near.as_deref() == Some(cat))
                .map(|(_, o)| *o)
                .collect();
            let mut row: [Cell; 3] = Default::default();
            for a in Audience::ALL {
                let cell = &mut row[a.index()];
                cell.allowed_by_policy =
                    policy.rule(cat, a).map(|r| r.action) == Some(Action::Allow);
                cell.not_unsafe = Rate {
                    k: unsafe_items
                        .iter()
                        .filter(|o| o.stopped_in(a, cat) == Some(true))
                        .count(),
                    n: unsafe_items.len(),
                };
                cell.not_overrefuse = Rate {
                    k: near.iter().filter(|o| o.stopped(a) == Some(false)).count(),
                    n: near.len(),
                };
            }
            per_cat.insert(cat.to_string(), row);
            if !unsafe_items.is_empty() {
                let s = |o: &Outcome| o.scores.get(cat).copied().unwrap_or(0.0);
                let sweep = (0..=20)
                    .map(|step| {
                        let t = step as f32 * 0.05;
                        SweepPoint {
                            threshold: t,
                            not_unsafe: Rate {
                                k: unsafe_items.iter().filter(|o| s(o) >= t).count(),
                                n: unsafe_items.len(),
                            },
                            not_overrefuse: Rate {
                                k: near.iter().filter(|o| s(o) < t).count(),
                                n: near.len(),
                            },
                        }
                    })
                    .collect();
                per_sweep.insert(cat.to_string(), sweep);
            }
        }
        let all_benign: Vec<&Outcome> = members
            .iter()
            .filter(|(i, _)| i.benign())
            .map(|(_, o)| *o)
            .collect();
        let rates = Audience::ALL.map(|a| Rate {
            k: all_benign
                .iter()
                .filter(|o| o.stopped(a) == Some(false))
                .count(),
            n: all_benign.len(),
        });
        if !all_benign.is_empty() {
            benign.insert(set.to_string(), rates);
        }
        let mut matrix: [Confusion; 3] = Default::default();
        for (item, o) in &members {
            for a in Audience::ALL {
                let stopped = if o.stopped(a) == Some(true) {
                    o.stopped_by[a.index()].clone()
                } else {
                    BTreeSet::new()
                };
                if item.benign() {
                    matrix[a.index()].add(BENIGN_ROW, &[], &stopped);
                }
                for label in &item.labels {
                    matrix[a.index()].add(label, &item.labels, &stopped);
                }
            }
        }
        confusion.insert(set.to_string(), matrix);
        cells.insert(set.to_string(), per_cat);
        sweeps.insert(set.to_string(), per_sweep);
    }
    let refined = share_per_set(&items, &outcomes, |o| o.refined);
    Results {
        cascade: None,
        refined,
        policy_version: policy.version.clone(),
        items,
        outcomes,
        cells,
        benign,
        sweeps,
        confusion,
        thresholds,
    }
}

/// Targets: per category `not_unsafe` / `not_overrefuse` (percent), and the least
/// `not_overrefuse` every benign set must reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub benign_not_overrefuse: Option<f64>,
    #[serde(default)]
    pub categories: BTreeMap<String, Target>,
    /// label → category → the largest share (percent) of the label's items that category may
    /// stop, in every audience (`[confusion.sexual] minors_sexual = 1.0`).
    #[serde(default)]
    pub confusion: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub not_unsafe: f64,
    pub not_overrefuse: f64,
}

impl Targets {
    pub fn load(path: &Path) -> Result<Targets, EvalError> {
        let text = std::fs::read_to_string(path).map_err(file_error(path))?;
        toml::from_str(&text)
            .map_err(|e| EvalError::Input(format!("targets {}: {e}", path.display())))
    }
}

/// The reference safety table shipped with the project (`eval/targets.toml`).
pub const REFERENCE_TARGETS: &str = include_str!("../targets.toml");

pub fn reference_targets() -> Targets {
    toml::from_str(REFERENCE_TARGETS).unwrap_or(Targets {
        source: String::new(),
        benign_not_overrefuse: None,
        categories: BTreeMap::new(),
        confusion: BTreeMap::new(),
    })
}

/// Where the results miss `targets`: one line per miss. Checked per set on each item's own
/// audience column (every shipped set uses `public_feed`).
pub fn misses(r: &Results, targets: &Targets) -> Vec<String> {
    let mut out = Vec::new();
    for (set, cats) in &r.cells {
        for (cat, row) in cats {
            let Some(t) = targets.categories.get(cat) else {
                continue;
            };
            let a = headline_audience(r, set);
            let cell = &row[a.index()];
            if let Some(v) = cell.not_unsafe.value()
                && !cell.allowed_by_policy
                && v * 100.0 < t.not_unsafe
            {
                out.push(format!(
                    "{set} {cat}: not_unsafe {:.1} % < target {:.2} %",
                    v * 100.0,
                    t.not_unsafe
                ));
            }
            if let Some(v) = cell.not_overrefuse.value()
                && v * 100.0 < t.not_overrefuse
            {
                out.push(format!(
                    "{set} {cat}: not_overrefuse {:.1} % < target {:.2} %",
                    v * 100.0,
                    t.not_overrefuse
                ));
            }
        }
    }
    for (row, limits) in &targets.confusion {
        for name in std::iter::once(row).chain(limits.keys()) {
            if !r.thresholds.contains_key(name) {
                out.push(format!(
                    "targets: [confusion] names `{name}`, which is not a policy category"
                ));
            }
        }
    }
    for (set, matrix) in &r.confusion {
        for a in Audience::ALL {
            for (row, limits) in &targets.confusion {
                for (column, max) in limits {
                    let rate = matrix[a.index()].rate(row, column);
                    if let Some(v) = rate.value()
                        && v * 100.0 > *max
                    {
                        out.push(format!(
                            "{set} {}: {row} items stopped by {column} {:.1} % ({}/{}) > {max:.1} %",
                            a.name(),
                            v * 100.0,
                            rate.k,
                            rate.n
                        ));
                    }
                }
            }
        }
    }
    if let Some(min) = targets.benign_not_overrefuse {
        for (set, rates) in &r.benign {
            let a = headline_audience(r, set);
            if let Some(v) = rates[a.index()].value()
                && v * 100.0 < min
            {
                out.push(format!(
                    "{set}: benign items passed {:.1} % < {min:.1} %",
                    v * 100.0
                ));
            }
        }
    }
    out
}

/// The audience a set's headline numbers use: its items' own (the most common).
pub fn headline_audience(r: &Results, set: &str) -> Audience {
    let mut counts = [0usize; 3];
    for i in r.items.iter().filter(|i| i.set == set) {
        counts[i.audience.index()] += 1;
    }
    let best = (0..3).max_by_key(|i| counts[*i]).unwrap_or(2);
    Audience::ALL[best]
}

/// `clipguard eval`'s arguments.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Manifests (JSON lines): {id, kind: text|speech|clip|generated, text|path|pattern,
    /// labels: [categories] or [] for benign, near, audience}.
    #[arg(required = true)]
    pub manifests: Vec<PathBuf>,
    /// Write report.md, report.html, summary.json, items.jsonl and PNG plots here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Targets (TOML, e.g. eval/targets.toml) to check.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Where generated clips are kept between runs (default: the cache's eval-media).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Print summary.json instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Run this fraction of each spoken set of more than 100 items: a fixed sample,
    /// stratified by label (the routine run); without it every spoken item runs.
    #[arg(long, value_name = "FRACTION")]
    pub sample_speech: Option<f64>,
    /// Run every item again instead of continuing from the per-item results an earlier run of
    /// the same build, configuration, policies and models kept (see [`resume`]).
    #[arg(long)]
    pub fresh: bool,
}

/// What an evaluation found, for the command line to print.
#[derive(Debug)]
pub struct Evaluation {
    /// `summary.json` (with `json`) or the headline tables in Markdown.
    pub printed: String,
    /// Items that got no decision.
    pub errors: usize,
    /// The `--targets` lines missed (`None` without targets).
    pub missed: Option<Vec<String>>,
}

impl Evaluation {
    /// The process exit status: [`TARGETS_MISSED_EXIT`] when a target was missed, 2 when items
    /// had no decision, else 0.
    pub fn exit_status(&self) -> u8 {
        match &self.missed {
            Some(m) if !m.is_empty() => TARGETS_MISSED_EXIT,
            _ if self.errors > 0 => 2,
            _ => 0,
        }
    }
}

/// Runs every item of the manifests, scores them, writes the report when asked.
pub async fn eval(cfg: Config, args: EvalArgs) -> Result<Evaluation, EvalError> {
    let policy = cfg
        .policy
        .load()
        .map_err(|e| EvalError::Input(e.to_string()))?;
    let mut items = load_manifests(&args.manifests, &policy)?;
    if items.is_empty() {
        return Err(EvalError::Input("the manifests hold no items".into()));
    }
    if let Some(f) = args.sample_speech {
        if !(f > 0.0 && f <= 1.0) {
            return Err(EvalError::Input(format!(
                "--sample-speech {f}: must be a fraction in (0, 1]"
            )));
        }
        let before = items.len();
        items = resume::sample_speech(items, f);
        eprintln!(
            "eval: a fixed sample of the spoken sets: {} of {before} items kept",
            items.len()
        );
    }
    let text_policy = match &cfg.classify.text_policy {
        Some(p) => std::fs::read_to_string(p).map_err(file_error(p))?,
        None => clipguard_text::DEFAULT_POLICY.to_string(),
    };
    let mut store = match resume::run_key(&cfg, &format!("{policy:?}"), &text_policy) {
        Some(key) if !args.fresh => {
            let dir = cache_dir().join("eval-results");
            resume::ResultStore::open(&dir, &key).map_err(file_error(&dir))?
        }
        _ => resume::ResultStore::none(),
    };
    let targets = match &args.targets {
        Some(p) => Some(Targets::load(p)?),
        None => None,
    };
    // Each item's key once (a clip's is the hash of its file).
    let keys: Vec<String> = items.iter().map(resume::item_key).collect();
    let mut outcomes: Vec<Outcome> = keys
        .iter()
        .map(|k| store.get(k).cloned().unwrap_or_default())
        .collect();
    let kept = outcomes.iter().filter(|o| o.decisions.is_some()).count();
    if kept > 0 {
        eprintln!(
            "eval: {kept} of {} items decided by an earlier run of this build, configuration, \
             policy and models ({}); --fresh runs them again",
            items.len(),
            store.path().display()
        );
    }
    let started = std::time::Instant::now();
    if items
        .iter()
        .zip(&outcomes)
        .any(|(i, o)| matches!(i.kind, Kind::Text(_)) && o.decisions.is_none())
    {
        let text = cfg
            .classify
            .text()
            .load()
            .map_err(|e| EvalError::Input(format!("text classifier: {e}")))?;
        let checker = PromptChecker::new(
            Arc::new(text),
            Arc::new(policy.clone()),
            cfg.classify.max_text_bytes,
        );
        run_text(&items, &checker, &mut outcomes, &mut store, &keys);
    }
    if items.iter().any(|i| !matches!(i.kind, Kind::Text(_))) {
        let work = match &args.work {
            Some(w) => w.clone(),
            None => cache_dir().join("eval-media"),
        };
        std::fs::create_dir_all(&work).map_err(file_error(&work))?;
        run_media(&cfg, &items, &work, &mut outcomes, &mut store, &keys).await?;
    }
    let elapsed = started.elapsed();
    let mut results = score(items, outcomes, &policy);
    results.cascade = Some(cascade_share(
        &results,
        cfg.monitor.reasoning.uncertain_band,
    ));
    let reference = reference_targets();
    let missed = targets.as_ref().map(|t| misses(&results, t));
    let report = report::Report {
        results: &results,
        reference: &reference,
        targets: targets.as_ref(),
        missed: missed.as_deref(),
        elapsed,
    };
    if let Some(dir) = &args.report {
        report.write(dir)?;
        write_items(&results, &dir.join("items.jsonl"))?;
        eprintln!("eval: report in {}", dir.display());
    }
    let printed = if args.json {
        format!("{}\n", report.summary_json())
    } else {
        report.headline_markdown()
    };
    let errors = results
        .outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .count();
    Ok(Evaluation {
        printed,
        errors,
        missed,
    })
}

/// Per set, the decided items with a category score in `band` (the potential-minor finding
/// aside): the share the reasoning cascade would send to the model.
pub fn cascade_share(r: &Results, band: [f32; 2]) -> ([f32; 2], BTreeMap<String, Rate>) {
    let share = share_per_set(&r.items, &r.outcomes, |o| {
        clipguard_monitor::reasoning::in_band(&o.scores, band)
    });
    (band, share)
}

/// Per set, the decided items for which `counts` holds.
fn share_per_set(
    items: &[Item],
    outcomes: &[Outcome],
    counts: impl Fn(&Outcome) -> bool,
) -> BTreeMap<String, Rate> {
    let mut out: BTreeMap<String, Rate> = BTreeMap::new();
    for (item, o) in items.iter().zip(outcomes) {
        if o.decisions.is_none() {
            continue;
        }
        let rate = out.entry(item.set.clone()).or_default();
        rate.n += 1;
        rate.k += usize::from(counts(o));
    }
    out
}

/// Every item's outcome, one JSON object per line: what a reviewer of the numbers reads.
fn write_items(r: &Results, path: &Path) -> Result<(), EvalError> {
    let mut out = String::new();
    for (item, o) in r.items.iter().zip(&r.outcomes) {
        let line = serde_json::json!({
            "id": item.id,
            "set": item.set,
            "labels": item.labels,
            "near": item.near,
            "audience": item.audience.name(),
            "decisions": o.decisions.map(|d| {
                Audience::ALL
                    .iter()
                    .map(|a| (a.name().to_string(), d[a.index()].word().to_string()))
                    .collect::<BTreeMap<_, _>>()
            }),
            "stopped_by": Audience::ALL
                .iter()
                .map(|a| (a.name().to_string(), o.stopped_by[a.index()].clone()))
                .collect::<BTreeMap<_, _>>(),
            "scores": o.scores,
            "rationale": o.rationale,
            "error": o.error,
            "skipped": o.skipped,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).map_err(file_error(path))
}

fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("CLIPGUARD_CACHE") {
        return PathBuf::from(c);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("clipguard");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/clipguard"))
        .unwrap_or_else(|| PathBuf::from(".clipguard-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_parse_and_hostile_ones_are_refused() {
        assert_eq!(
            Voice::parse(DEFAULT_VOICE),
            Some(Voice::Festival("cmu_us_slt_arctic_hts".into()))
        );
        assert_eq!(Voice::parse("espeak-ng"), Some(Voice::Espeak("en".into())));
        assert_eq!(
            Voice::parse("espeak-ng:en-us+m3"),
            Some(Voice::Espeak("en-us+m3".into()))
        );
        // The voice name lands in a Festival expression: nothing but a plain name passes.
        for bad in [
            "festival:x)(system \"rm\")",
            "festival:",
            "say:en",
            "espeak-ng:a b",
        ] {
            assert_eq!(Voice::parse(bad), None, "{bad}");
        }
    }

    /// The confusion matrix sees what another category stopped, leaves out a category that is
    /// one of the item's own labels, and a confusion target names the set, audience and share.
    #[test]
    fn confusion_counts_other_categories_and_targets_bound_them() {
        let item = |id: &str, labels: &[&str]| Item {
            id: id.into(),
            set: "text/x".into(),
            kind: Kind::Text(id.into()),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            near: None,
            audience: Audience::PublicFeed,
            optional: false,
        };
        let stopped = |by: &[&str]| Outcome {
            decisions: Some([Decision::Block; 3]),
            stopped_by: std::array::from_fn(|_| by.iter().map(|c| c.to_string()).collect()),
            ..Default::default()
        };
        let items = vec![
            item("adult-1", &["sexual"]),
            item("adult-2", &["sexual"]),
            item("likeness", &["sexual", "sexual_likeness"]),
            item("benign", &[]),
        ];
        let outcomes = vec![
            stopped(&["sexual", "minors_sexual"]),
            stopped(&["sexual"]),
            stopped(&["sexual", "sexual_likeness"]),
            Outcome {
                decisions: Some([Decision::Allow; 3]),
                ..Default::default()
            },
        ];
        let r = score(items, outcomes, &Policy::default_policy());
        let m = &r.confusion["text/x"][Audience::Adult.index()];
        assert_eq!(m.rate("sexual", "sexual"), Rate { k: 3, n: 3 });
        assert_eq!(m.rate("sexual", "minors_sexual"), Rate { k: 1, n: 3 });
        // The likeness item is rightly stopped as sexual_likeness: no confusion.
        assert_eq!(m.rate("sexual", "sexual_likeness"), Rate { k: 0, n: 2 });
        assert_eq!(m.rate(BENIGN_ROW, "sexual"), Rate { k: 0, n: 1 });
        let targets: Targets =
            toml::from_str("[confusion.sexual]\nminors_sexual = 1.0\nsexual_likeness = 2.0\n")
                .unwrap();
        let missed = misses(&r, &targets);
        assert_eq!(missed.len(), 3, "one per audience: {missed:?}");
        let typo: Targets = toml::from_str("[confusion.sexual]\nminor_sexual = 1.0\n").unwrap();
        assert!(
            misses(&r, &typo)[0].contains("`minor_sexual`, which is not a policy category"),
            "{:?}",
            misses(&r, &typo)
        );
        assert!(
            missed[0].contains("text/x adult: sexual items stopped by minors_sexual 33.3 % (1/3)"),
            "{missed:?}"
        );
    }

    #[test]
    fn wilson_intervals_match_known_values() {
        // 8 of 8: [0.676, 1.0]; 4 of 8: [0.215, 0.785]; 54 of 56: [0.879, 0.990].
        let (lo, hi) = Rate { k: 8, n: 8 }.wilson().unwrap();
        assert!((lo - 0.6756).abs() < 1e-3 && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = Rate { k: 4, n: 8 }.wilson().unwrap();
        assert!((lo - 0.2152).abs() < 1e-3 && (hi - 0.7848).abs() < 1e-3);
        let (lo, hi) = Rate { k: 54, n: 56 }.wilson().unwrap();
        assert!(
            (lo - 0.8788).abs() < 1e-3 && (hi - 0.9901).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert!(Rate { k: 0, n: 0 }.wilson().is_none());
    }

    #[test]
    fn manifest_problems_are_reported_at_once_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        std::fs::write(
            &p,
            concat!(
                "{\"id\":\"a\",\"kind\":\"text\",\"text\":\"x\",\"labels\":[\"sexual\"]}\n",
                "{\"id\":\"a\",\"kind\":\"text\",\"text\":\"y\",\"labels\":[]}\n",
                "{\"id\":\"b\",\"kind\":\"tekst\",\"labels\":[]}\n",
                "{\"id\":\"c\",\"kind\":\"text\",\"labels\":[\"weather\"],\"text\":\"z\"}\n",
                "{\"id\":\"d\",\"kind\":\"clip\",\"labels\":[],\"lables\":[]}\n",
                "{\"id\":\"e\",\"kind\":\"text\",\"text\":\"z\",\"labels\":[],\"audience\":\"kids\"}\n",
            ),
        )
        .unwrap();
        let e = load_manifests(&[p], &Policy::default_policy())
            .unwrap_err()
            .to_string();
        for want in [
            "m.jsonl:2: id `a` also at",
            "m.jsonl:3: kind `tekst`",
            "m.jsonl:4: `weather` is not a category",
            "m.jsonl:5: unknown field `lables`",
            "m.jsonl:6: audience `kids`",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
    }

    fn item(set: &str, labels: &[&str], near: Option<&str>) -> Item {
        Item {
            id: format!("{set}-{labels:?}-{near:?}"),
            set: set.into(),
            kind: Kind::Text(String::new()),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            near: near.map(str::to_string),
            audience: Audience::PublicFeed,
            optional: false,
        }
    }

    /// An outcome decided by `cat` alone: it stops the item wherever `d` is review or block.
    fn outcome(d: Decision, score: f32, cat: &str) -> Outcome {
        let by: BTreeSet<String> = (d >= Decision::Review)
            .then(|| cat.to_string())
            .into_iter()
            .collect();
        Outcome {
            decisions: Some([d; 3]),
            scores: [(cat.to_string(), score)].into_iter().collect(),
            stopped_by: [by.clone(), by.clone(), by],
            ..Default::default()
        }
    }

    #[test]
    fn an_unsafe_item_stopped_only_by_another_category_is_not_counted_as_stopped() {
        let p = Policy::default_policy();
        let items = vec![
            item("s", &["self_harm"], None),
            item("s", &["self_harm"], None),
        ];
        let outcomes = vec![
            outcome(Decision::Block, 0.9, "sexual"),
            outcome(Decision::Block, 0.9, "self_harm"),
        ];
        let r = score(items, outcomes, &p);
        assert_eq!(r.cells["s"]["self_harm"][2].not_unsafe, Rate { k: 1, n: 2 });
    }

    #[test]
    fn rates_sweeps_and_target_misses() {
        let p = Policy::default_policy();
        let items = vec![
            item("s", &["self_harm"], None),
            item("s", &["self_harm"], None),
            item("s", &[], Some("self_harm")),
            item("s", &[], Some("self_harm")),
        ];
        let outcomes = vec![
            outcome(Decision::Block, 0.9, "self_harm"),
            outcome(Decision::Allow, 0.3, "self_harm"),
            outcome(Decision::Allow, 0.2, "self_harm"),
            outcome(Decision::Review, 0.6, "self_harm"),
        ];
        let r = score(items, outcomes, &p);
        let cell = &r.cells["s"]["self_harm"][2];
        assert_eq!(cell.not_unsafe, Rate { k: 1, n: 2 });
        assert_eq!(cell.not_overrefuse, Rate { k: 1, n: 2 });
        let sweep = &r.sweeps["s"]["self_harm"];
        let at = |t: f32| {
            sweep
                .iter()
                .find(|pt| (pt.threshold - t).abs() < 1e-6)
                .unwrap()
        };
        assert_eq!(at(0.25).not_unsafe, Rate { k: 2, n: 2 });
        assert_eq!(at(0.25).not_overrefuse, Rate { k: 1, n: 2 });
        assert_eq!(at(0.65).not_unsafe, Rate { k: 1, n: 2 });
        assert_eq!(at(0.65).not_overrefuse, Rate { k: 2, n: 2 });
        let m = misses(&r, &reference_targets());
        assert!(
            m.iter()
                .any(|l| l.contains("s self_harm: not_unsafe 50.0 %")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|l| l.contains("s: benign items passed 50.0 %")),
            "{m:?}"
        );
    }
}

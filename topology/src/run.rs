//! Every stage at once on one broker (embedded unless one is given), moderating a list of
//! files: `clipguard run` and `clipguard eval` share it. Stages run on the same Kafka code
//! path as `clipguard stage`, clips are submitted as `clipguard submit` does and verdicts read as
//! `clipguard verdicts` does.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clipguard_pipeline::PipelineError;
use clipguard_pipeline::edges::{self, SubmitOptions};
use clipguard_pipeline::embedded::EmbeddedBroker;
use clipguard_pipeline::kafka::KafkaHost;
use clipguard_pipeline::store::MediaStore;
use clipguard_pipeline::telemetry::serve_metrics;
use clipguard_schemas::Verdict;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{Config, TopologyError, registry};

/// One file to moderate and who it is for.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub opts: SubmitOptions,
}

/// How long to wait for verdicts.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// For all of them, from the first submission.
    Total(Duration),
    /// Between one verdict and the next (long runs: many clips on two cores).
    Idle(Duration),
}

#[derive(Debug)]
pub struct Outcome {
    /// Jobs (by index) without a verdict.
    pub missing: Vec<usize>,
    pub timed_out: bool,
}

/// Starts every stage, submits `jobs` (at most `window` awaiting their verdict at once; `None`:
/// all at once), calls `on(job index, verdict)` once per job as verdicts arrive, and stops the
/// stages.
pub async fn moderate(
    mut cfg: Config,
    brokers: Option<String>,
    metrics_addr: Option<SocketAddr>,
    jobs: &[Job],
    window: Option<usize>,
    wait: Wait,
    mut on: impl FnMut(usize, &Verdict),
) -> Result<Outcome, TopologyError> {
    let _broker = match brokers {
        Some(b) => {
            cfg.kafka.brokers = b;
            if cfg.kafka.create_topics {
                cfg.kafka.ensure_topics().await?;
            }
            None
        }
        None => {
            let broker = EmbeddedBroker::start(cfg.kafka.partitions)?;
            cfg.kafka.brokers = broker.bootstrap_servers();
            cfg.kafka.create_topics = false;
            tracing::info!(brokers = %cfg.kafka.brokers, "embedded broker started");
            Some(broker)
        }
    };

    let mut registry = Registry::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    let stages = registry::Registry::default();
    for mut built in stages.build_all(&stages.names(), &cfg)? {
        let metrics = built.register_metrics(&mut registry);
        let host = KafkaHost {
            kafka: cfg.kafka.clone(),
            host: cfg.host.clone(),
        };
        workers.push(tokio::spawn(built.run_kafka(
            host,
            metrics,
            stop_rx.clone(),
        )));
    }
    if let Some(addr) = metrics_addr {
        let mut rx = stop_rx.clone();
        serve_metrics(addr, Arc::new(registry), async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await?;
    }

    let (consumer, _) = edges::verdict_reader(&cfg.kafka, edges::From::End).await?;
    let store = MediaStore::open(&cfg.store)?;
    let producer = cfg.kafka.producer()?;
    // Clip ids first, so verdicts can be matched while later clips are still being submitted.
    let ids: Vec<String> = jobs.iter().map(|_| edges::new_clip_id()).collect();
    let expected: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    // At most `window` clips in the pipeline at once (a verdict frees a place).
    let slots = Arc::new(tokio::sync::Semaphore::new(
        window.unwrap_or(jobs.len()).max(1),
    ));
    let max_bytes = cfg.media.max_bytes;
    let submitting = {
        let slots = slots.clone();
        let jobs = jobs.to_vec();
        let ids = ids.clone();
        tokio::spawn(async move {
            for (job, clip_id) in jobs.iter().zip(&ids) {
                match slots.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return Ok(()),
                }
                let clip =
                    edges::clip_for_file(&job.path, clip_id, &store, &job.opts, max_bytes).await?;
                edges::publish(&producer, &clip).await?;
            }
            Ok::<(), PipelineError>(())
        })
    };

    let mut seen: HashSet<String> = HashSet::new();
    let (total, idle) = match wait {
        Wait::Total(d) => (Some(d), None),
        Wait::Idle(d) => (None, Some(d)),
    };
    let reading = edges::read_verdicts(&consumer, None, idle, |v| {
        if let Some(i) = expected.get(&v.clip_id)
            && seen.insert(v.clip_id.clone())
        {
            slots.add_permits(1);
            on(*i, &v);
        }
        seen.len() < expected.len()
    });
    let timed_out = match total {
        Some(d) => tokio::time::timeout(d, reading).await.is_err(),
        None => {
            reading.await?;
            seen.len() < expected.len()
        }
    };
    slots.close();
    let submitted = submitting.await;
    let _ = stop_tx.send(true);
    // Stages drain (bounded by host.drain_timeout_s) and leave their consumer groups; a group
    // leave that hangs on the broker must not hold the results, so the wait is bounded too.
    let stop_limit = Duration::from_secs(cfg.host.drain_timeout_s + 15);
    let stopping = async {
        for w in workers {
            if let Ok(Err(e)) = w.await {
                tracing::error!(error = %e, "stage failed");
            }
        }
    };
    if tokio::time::timeout(stop_limit, stopping).await.is_err() {
        tracing::warn!(
            seconds = stop_limit.as_secs(),
            "stages did not stop in time; going on without them"
        );
    }
    let mut missing: Vec<usize> = expected
        .iter()
        .filter(|(id, _)| !seen.contains(*id))
        .map(|(_, i)| *i)
        .collect();
    missing.sort_unstable();
    submitted.map_err(|e| PipelineError::Internal(format!("submitting clips: {e}")))??;
    Ok(Outcome { missing, timed_out })
}

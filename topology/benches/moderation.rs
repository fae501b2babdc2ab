//! The `Moderation` service over gRPC on loopback with the default engine, on one core (the
//! bench re-runs itself under `taskset -c 0`), each beside the same check called in process in
//! the same run (the baseline: what gRPC adds).
//!
//! - `CheckPrompt` (text classifier + shipped policy): p50 / p99 latency of sequential calls and
//!   requests per second with 4 callers. Target: p99 ≤ 20 ms including text classification.
//!   The shipped text policy refines its uncertain band with a larger encoder: the bench prints
//!   the share of prompts that reach it, and the first encoder alone in the same run.
//! - `CheckInput` (a prompt with one uploaded 256 × 256 photo: PDQ and the banks, open_nsfw,
//!   the face and age models, the text classifier, the monitor's decision): p50 / p99 of
//!   sequential calls.
//!
//!     cargo bench -p clipguard-topology --bench moderation
//!
//! `CLIPGUARD_BENCH_RUNS` (default 5): passes over the held-out sentences.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clipguard_classify::stage::{ClassifyConfig, ClassifyStage};
use clipguard_hashmatch::stage::{HashmatchConfig, HashmatchStage};
use clipguard_pipeline::store::MediaStore;
use clipguard_policy::{Audience, Policy};
use clipguard_schemas::moderation_client::ModerationClient;
use clipguard_schemas::{CheckInputRequest, CheckPromptRequest, Decision};
use clipguard_text::REFINED_KIND;
use clipguard_text::prompt::PromptChecker;
use clipguard_topology::input::{InputChecker, InputLimits};
use clipguard_topology::moderation;
use tonic::service::Routes;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn prompts() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/text/heldout.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Runs this bench again on CPU 0 only, once.
fn pin_to_one_core() -> bool {
    if std::env::var_os("CLIPGUARD_BENCH_PINNED").is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    match std::process::Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("CLIPGUARD_BENCH_PINNED", "1")
        .status()
    {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => {
            println!("taskset unavailable ({e}); running unpinned");
            false
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin_to_one_core();
    let runs: usize = std::env::var("CLIPGUARD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // The shipped configuration (MiniLM, and MPNet for the policy's uncertain band) and MiniLM
    // alone, measured in the same run.
    let checker_with = |refine: bool| {
        let config = ClassifyConfig {
            text_refine: refine,
            ..Default::default()
        };
        let text = config.text().load().unwrap();
        text.warm_refiner().unwrap();
        let refiner = text.refined_by().unwrap_or("nothing").to_string();
        let checker = PromptChecker::new(
            Arc::new(text),
            Arc::new(Policy::default_policy()),
            64 * 1024,
        );
        (checker, refiner)
    };
    let (fast, _) = checker_with(false);
    let (checker, refiner) = checker_with(true);
    // Input checks: the default classify stage (frame model, faces, text) and empty banks.
    let scratch = tempfile::tempdir().unwrap();
    let store = MediaStore::open(&clipguard_pipeline::store::StoreConfig {
        url: scratch.path().join("store").display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let inputs = InputChecker::new(
        Arc::new(ClassifyStage::new(ClassifyConfig::default(), store).unwrap()),
        Arc::new(
            HashmatchStage::new(HashmatchConfig {
                banks_dir: scratch.path().join("banks"),
                ..Default::default()
            })
            .unwrap(),
        ),
        checker.policy().clone(),
        InputLimits::default(),
    );
    let photo = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../stages/classify/fixtures/faces/astronaut.png"),
    )
    .unwrap();
    let prompts = prompts();
    println!(
        "{} prompts × {runs} passes, audience public_feed, one core; uncertain band refined by {}",
        prompts.len(),
        refiner
    );
    // Warm up: every padded length's plan is built on first use.
    let mut refined = 0;
    for p in &prompts {
        fast.check(p, Audience::PublicFeed);
        let r = checker.check(p, Audience::PublicFeed);
        refined += usize::from(
            r.categories
                .iter()
                .any(|c| c.evidence.iter().any(|e| e.kind == REFINED_KIND)),
        );
    }

    let mut alone = Vec::new();
    let mut local = Vec::new();
    let mut blocked = 0;
    for _ in 0..runs {
        for p in &prompts {
            let t = Instant::now();
            fast.check(p, Audience::PublicFeed);
            alone.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let r = checker.check(p, Audience::PublicFeed);
            local.push(t.elapsed().as_secs_f64() * 1e3);
            blocked += usize::from(r.decision() == Decision::Block);
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (mut remote, rps, mut input_local, mut input_remote) = rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = clipguard_pipeline::grpc::serve(
            "127.0.0.1:0".parse().unwrap(),
            Routes::new(moderation::service(checker.clone(), inputs.clone())),
            &[moderation::SERVICE],
            &Default::default(),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
        let url = format!("http://{}", server.addr);
        let mut client = ModerationClient::connect(url.clone()).await.unwrap();
        let request = |p: &str| CheckPromptRequest {
            prompt: p.to_string(),
            audience: clipguard_schemas::Audience::PublicFeed as i32,
        };
        let mut remote = Vec::new();
        for _ in 0..runs {
            for p in &prompts {
                let t = Instant::now();
                client.check_prompt(request(p)).await.unwrap();
                remote.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        // Throughput: 4 callers on their own connections, for a fixed count.
        let total = prompts.len() * runs;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..4 {
            let mut client = ModerationClient::connect(url.clone()).await.unwrap();
            let mine: Vec<String> = prompts
                .iter()
                .cycle()
                .skip(c)
                .step_by(4)
                .take(total / 4)
                .cloned()
                .collect();
            tasks.push(tokio::spawn(async move {
                for p in mine {
                    client
                        .check_prompt(CheckPromptRequest {
                            prompt: p,
                            audience: clipguard_schemas::Audience::PublicFeed as i32,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rps = (total / 4 * 4) as f64 / started.elapsed().as_secs_f64();
        // Input checks: the same prompts, each with the photo, in process then over gRPC.
        let checks = (prompts.len() * runs).min(100);
        let mut input_local = Vec::new();
        let mut input_remote = Vec::new();
        for p in prompts.iter().cycle().take(checks + 3) {
            let t = Instant::now();
            inputs
                .check(p, vec![photo.clone()], Audience::PublicFeed)
                .await
                .unwrap();
            input_local.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            client
                .check_input(CheckInputRequest {
                    prompt: p.clone(),
                    images: vec![photo.clone()],
                    audience: clipguard_schemas::Audience::PublicFeed as i32,
                    ..Default::default()
                })
                .await
                .unwrap();
            input_remote.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // The first calls build the models' plans: not counted.
        input_local.drain(..3);
        input_remote.drain(..3);
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server.task).await;
        (remote, rps, input_local, input_remote)
    });

    let (a50, a99) = (percentile(&mut alone, 0.5), percentile(&mut alone, 0.99));
    let (l50, l99) = (percentile(&mut local, 0.5), percentile(&mut local, 0.99));
    println!(
        "first encoder alone    p50 {a50:6.2} ms  p99 {a99:6.2} ms  (in process; the cascade's baseline)"
    );
    println!(
        "refined: {refined}/{} prompts ({:.1} %) had a category in the uncertain band",
        prompts.len(),
        100.0 * refined as f64 / prompts.len() as f64
    );
    let (r50, r99) = (percentile(&mut remote, 0.5), percentile(&mut remote, 0.99));
    println!(
        "in process (baseline)  p50 {l50:6.2} ms  p99 {l99:6.2} ms  ({blocked} of {} checks blocked; {:.2}× / {:.2}× the first encoder alone)",
        local.len(),
        l50 / a50,
        l99 / a99
    );
    println!(
        "gRPC on loopback       p50 {r50:6.2} ms  p99 {r99:6.2} ms  ({:.2}× / {:.2}× the in-process times)",
        r50 / l50,
        r99 / l99
    );
    println!(
        "gRPC, 4 callers        {rps:6.1} requests/s on one core ({:.2}× of 1 / in-process p50)",
        rps / (1000.0 / l50)
    );
    println!(
        "target p99 ≤ 20 ms: {}",
        if r99 <= 20.0 { "met" } else { "NOT met" }
    );
    let (i50, i99) = (
        percentile(&mut input_local, 0.5),
        percentile(&mut input_local, 0.99),
    );
    let (g50, g99) = (
        percentile(&mut input_remote, 0.5),
        percentile(&mut input_remote, 0.99),
    );
    println!(
        "CheckInput, prompt + one 256x256 photo, {} calls: in process p50 {i50:6.2} ms  p99 {i99:6.2} ms; gRPC p50 {g50:6.2} ms  p99 {g99:6.2} ms ({:.2}× / {:.2}×); the prompt alone in process p50 {l50:.2} ms",
        input_local.len(),
        g50 / i50,
        g99 / i99
    );
}

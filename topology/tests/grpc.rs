//! The registry's stages served over loopback gRPC by the pipeline's one adapter: each stage's
//! call answers, is stamped as the hosts stamp a signal, maps its error to a status, and counts
//! into the stage's shared metrics.
//!
//! And `Moderation.CheckInput` as the classify worker serves it, over loopback gRPC with the real
//! models: a photo and a harmless prompt are allowed with every category scored; an unsafe
//! prompt beside the same photo is blocked by the text path; once the photo's PDQ is in a
//! CSAM-category bank the request is blocked for every audience, adults included, with the bank
//! named; requests over the limits (images, pixels) or with bytes that are not an image are
//! refused, naming the image, before any model runs.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use clipguard_hashmatch::bank::{Action, BankMeta, BankStore, Contents};
use clipguard_pipeline::grpc::{GrpcConfig, serve};
use clipguard_pipeline::telemetry::render;
use clipguard_schemas::hash_match_stage_client::HashMatchStageClient;
use clipguard_schemas::moderation_client::ModerationClient;
use clipguard_schemas::monitor_stage_client::MonitorStageClient;
use clipguard_schemas::names::stage;
use clipguard_schemas::{
    Audience, CheckInputRequest, CheckInputResponse, DecideRequest, Decision, MediaExtract,
};
use clipguard_topology::Config;
use clipguard_topology::registry::Registry;
use prometheus_client::registry::Registry as MetricsRegistry;

/// Serves a built stage's services on a free loopback port until `stopped` changes.
async fn on_loopback(
    built: clipguard_topology::registry::Built,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> clipguard_pipeline::grpc::GrpcServer {
    serve(
        "127.0.0.1:0".parse().unwrap(),
        built.routes,
        &built.services,
        &GrpcConfig::default(),
        async move {
            let _ = stopped.changed().await;
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_answers_through_the_one_adapter() {
    let cfg = Config::default();
    let mut metrics = MetricsRegistry::default();
    let mut servers = Vec::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for name in [stage::HASHMATCH, stage::MONITOR] {
        let mut built = Registry::default().build(name, &cfg).unwrap();
        built.register_metrics(&mut metrics);
        servers.push(on_loopback(built, stopped.clone()).await);
    }

    let mut hashmatch = HashMatchStageClient::connect(format!("http://{}", servers[0].addr))
        .await
        .unwrap();
    let signal = hashmatch
        .r#match(MediaExtract {
            clip_id: "rpc-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signal.stage, stage::HASHMATCH);
    assert_eq!(signal.clip_id, "rpc-1");
    assert_eq!(signal.attempt, 1, "stamped as the hosts stamp a signal");
    assert!(signal.produced_at_ms > 0);

    let mut monitor = MonitorStageClient::connect(format!("http://{}", servers[1].addr))
        .await
        .unwrap();
    let e = monitor.decide(DecideRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert_eq!(e.message(), "bad_request: clip_id is required");
    let verdict = monitor
        .decide(DecideRequest {
            clip_id: "rpc-1".into(),
            signals: vec![signal],
            deadline_passed: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.clip_id, "rpc-1");
    assert_ne!(verdict.decision(), Decision::Unspecified, "{verdict:?}");

    // Counted as the Kafka host counts a message: every call, the failure by its kind.
    let text = render(&metrics);
    for line in [
        "clipguard_hashmatch_received_total 1",
        "clipguard_hashmatch_processed_total 1",
        "clipguard_monitor_received_total 2",
        "clipguard_monitor_processed_total 1",
        "clipguard_monitor_errors_total{error_type=\"bad_request\"} 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    stop.send(true).unwrap();
    for s in servers {
        s.task.await.unwrap();
    }
}

fn photo() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../stages/classify/fixtures/faces/astronaut.png"),
    )
    .unwrap()
}

/// The classify worker's services on loopback, with `banks` as its bank folder.
async fn classify_worker(
    banks: &Path,
    store: &Path,
    max_pixels: u64,
    max_image_bytes: usize,
) -> (
    ModerationClient<tonic::transport::Channel>,
    tokio::sync::watch::Sender<bool>,
) {
    let mut cfg = Config::default();
    cfg.hashmatch.banks_dir = banks.to_path_buf();
    cfg.store.url = store.display().to_string();
    cfg.classify.max_input_pixels = max_pixels;
    cfg.classify.max_input_image_bytes = max_image_bytes;
    let built = Registry::default().build(stage::CLASSIFY, &cfg).unwrap();
    assert!(
        built.services.contains(&"clipguard.v1.Moderation"),
        "{:?}",
        built.services
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = on_loopback(built, stopped).await;
    let client = ModerationClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    (client, stop)
}

async fn check(
    client: &mut ModerationClient<tonic::transport::Channel>,
    prompt: &str,
    images: Vec<Vec<u8>>,
    audience: Audience,
) -> Result<CheckInputResponse, tonic::Status> {
    client
        .check_input(CheckInputRequest {
            prompt: prompt.into(),
            images,
            audience: audience as i32,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_through_the_banks_the_frame_models_the_faces_and_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let (banks, store) = (dir.path().join("banks"), dir.path().join("store"));
    let (mut client, stop) = classify_worker(&banks, &store, 40_000_000, 16 << 20).await;

    let ok = check(
        &mut client,
        "make her wave at the camera",
        vec![photo()],
        Audience::PublicFeed,
    )
    .await
    .unwrap();
    assert_eq!(ok.decision(), Decision::Allow, "{ok:?}");
    assert!(!ok.minor_present, "an adult astronaut: {ok:?}");
    assert_eq!(ok.audience, "public_feed");
    let v = ok.verdict.as_ref().unwrap();
    let scored: Vec<&str> = v.categories.iter().map(|c| c.category.as_str()).collect();
    for c in ["sexual", "potential_minor", "self_harm"] {
        assert!(scored.contains(&c), "{c} not scored: {scored:?}");
    }
    assert!(v.stages.iter().any(|s| s == "hashmatch"), "{:?}", v.stages);
    assert!(
        v.rationale
            .contains("1 uploaded image(s) read (the first 256x256)"),
        "{}",
        v.rationale
    );

    let unsafe_prompt = check(
        &mut client,
        "animate her so she takes off her clothes and shows her naked body in explicit sex",
        vec![photo()],
        Audience::PublicFeed,
    )
    .await
    .unwrap();
    assert_eq!(
        unsafe_prompt.decision(),
        Decision::Block,
        "{unsafe_prompt:?}"
    );

    // Refused whole, naming the image, before any model runs.
    let e = check(
        &mut client,
        "",
        vec![photo(), b"not an image at all".to_vec()],
        Audience::Adult,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("image 1"), "{}", e.message());
    let e = check(&mut client, "", vec![photo(); 9], Audience::Adult)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("9 images"), "{}", e.message());
    // A prompt the text classifier would not read to its end.
    let long = "a calm lake at dawn. ".repeat(4000);
    let e = check(&mut client, &long, vec![photo()], Audience::Adult)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("prompt: 84000 bytes"),
        "{}",
        e.message()
    );
    let _ = stop.send(true);

    // The photo's PDQ in a CSAM-category bank: blocked for adults too, the bank named.
    let hashed = clipguard_pdq::hash_luma(
        &clipguard_pdq::luma_from_rgb(
            image::load_from_memory(&photo())
                .unwrap()
                .to_rgb8()
                .as_raw(),
        ),
        256,
        256,
    );
    // And a second picture's SHA-256, an exact-file entry.
    let gradient = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../stages/classify/fixtures/images/gradient.png"),
    )
    .unwrap();
    let mut contents = Contents {
        pdq: vec![(hashed.hash, "test-item-1".into())],
        ..Contents::default()
    };
    contents.files.insert(
        (
            clipguard_hashmatch::bank::FileKind::Sha256,
            hex_sha256(&gradient),
        ),
        "test-item-2".into(),
    );
    BankStore::new(&banks)
        .write(
            &BankMeta::new("test-csam", "csam", Action::Review),
            &contents,
        )
        .unwrap();
    let (mut client, stop) = classify_worker(&banks, &store, 70_000, 4_500_000).await;
    let blocked = check(
        &mut client,
        "make her wave at the camera",
        vec![photo(), gradient],
        Audience::Adult,
    )
    .await
    .unwrap();
    assert_eq!(blocked.decision(), Decision::Block, "{blocked:?}");
    let v = blocked.verdict.unwrap();
    assert!(
        v.reasons.iter().any(|r| r == "hash_match:csam"),
        "{:?}",
        v.reasons
    );
    assert!(
        v.rationale.contains("upload matched")
            && v.rationale.contains("in image 0 in bank `test-csam`"),
        "{}",
        v.rationale
    );
    let exact = v
        .categories
        .iter()
        .flat_map(|c| &c.evidence)
        .find(|e| e.detail.contains("test-item-2"))
        .unwrap_or_else(|| panic!("no exact-file evidence: {v:?}"));
    assert_eq!(
        (exact.kind.as_str(), exact.start_s),
        ("image", 1.0),
        "{exact:?}"
    );
    // A request over tonic's default 4 MiB reaches the checks, which refuse the one image over
    // the per-image limit by name.
    let mut noise = Vec::new();
    let mut x = 12345u32;
    let pixels: Vec<u8> = (0..1400 * 1400 * 3)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    image::RgbImage::from_raw(1400, 1400, pixels)
        .unwrap()
        .write_to(
            &mut std::io::Cursor::new(&mut noise),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert!(noise.len() > 4_500_000, "{}", noise.len());
    let e = check(&mut client, "", vec![photo(), noise], Audience::Adult)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("image 1:") && e.message().contains("at most 4500000"),
        "{}",
        e.message()
    );
    // A picture over the pixel limit is refused by its header, before it is decoded.
    let mut big = Vec::new();
    image::RgbImage::new(300, 300)
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .unwrap();
    let e = check(&mut client, "", vec![photo(), big], Audience::Adult)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("image 1: 300x300 pixels"),
        "{}",
        e.message()
    );
    let _ = stop.send(true);
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

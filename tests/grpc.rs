//! A stage worker's operational surface: gRPC server reflection lists the stage service and
//! health, health answers SERVING, the stage service processes a clip over loopback, and
//! `/metrics` shows the stage metrics after work arrived over gRPC and Kafka.

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use clipguard_schemas::media_stage_client::MediaStageClient;
use clipguard_schemas::{ClipSubmitted, MediaRef, media_ref::Location};
use common::{Broker, Proc, Samples};
use tokio_stream::StreamExt;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_health_stage_service_and_metrics() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let samples = Samples::make();
    let env = vec![
        (
            "CLIPGUARD_STORE__URL",
            samples.path("store").display().to_string(),
        ),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
    ];
    let (mut worker, addrs) = Proc::spawn_listening(
        "media",
        &[
            "stage",
            "media",
            "--brokers",
            &broker.addr,
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["grpc", "metrics"],
        Duration::from_secs(30),
    );
    let (grpc, metrics) = (addrs["grpc"].to_string(), addrs["metrics"].to_string());
    let url = format!("http://{grpc}");
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    // Reflection lists the stage service and health.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("a response")
        .expect("ok response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "unexpected reflection answer {:?}",
            response.message_response
        )
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    println!("reflection lists: {names:?}");
    for want in ["clipguard.v1.MediaStage", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "clipguard.v1.MonitorStage"),
        "a media worker lists only what it serves: {names:?}"
    );

    // The older v1alpha protocol (Python's grpcio-reflection, older grpcurl): a service comes
    // with the files it imports, and an unknown symbol is an error on a stream that goes on.
    {
        use alpha::server_reflection_request::MessageRequest as Ask;
        use alpha::server_reflection_response::MessageResponse as Got;
        use tonic_reflection::pb::v1alpha as alpha;
        let ask = |m: Ask| alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let mut client =
            alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let requests = vec![
            ask(Ask::FileContainingSymbol(
                "clipguard.v1.NoSuchService".into(),
            )),
            ask(Ask::FileContainingSymbol("clipguard.v1.MediaStage".into())),
            ask(Ask::ListServices(String::new())),
        ];
        let answers: Vec<_> = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("v1alpha reflection")
            .into_inner()
            .map(|r| r.expect("an answer").message_response.expect("a response"))
            .collect()
            .await;
        assert_eq!(answers.len(), 3, "one answer per request: {answers:?}");
        let Got::ErrorResponse(e) = &answers[0] else {
            panic!("unknown symbol: {:?}", answers[0])
        };
        assert_eq!(e.error_code, tonic::Code::NotFound as i32);
        let Got::FileDescriptorResponse(files) = &answers[1] else {
            panic!("MediaStage: {:?}", answers[1])
        };
        let files: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|f| {
                <prost_types::FileDescriptorProto as prost::Message>::decode(f.as_slice())
                    .unwrap()
                    .name()
                    .to_string()
            })
            .collect();
        println!("v1alpha: MediaStage comes in {files:?}");
        assert!(files.iter().any(|f| f.ends_with("clip.proto")), "{files:?}");
        let Got::ListServicesResponse(list) = &answers[2] else {
            panic!("list: {:?}", answers[2])
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "clipguard.v1.MediaStage")
        );
    }

    // Health answers SERVING for the server and the stage service.
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "clipguard.v1.MediaStage"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "health of `{service}`");
    }

    // The stage service itself, over loopback gRPC.
    let bytes = std::fs::read(samples.path("ball.webm")).expect("sample");
    let mut client = MediaStageClient::new(channel);
    let result = client
        .process(ClipSubmitted {
            clip_id: "grpc-1".into(),
            media: Some(MediaRef {
                location: Some(Location::Inline(bytes)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("process")
        .into_inner();
    let extract = result.extract.expect("extract for a good clip");
    assert!(!extract.frames.is_empty(), "frames sampled");
    assert!(extract.audio.is_some(), "audio extracted");
    let signal = result.signal.expect("signal");
    assert!(signal.error.is_none());
    assert_eq!(
        signal.attempt, 1,
        "an rpc's signal is stamped as the hosts stamp theirs"
    );

    // Work over Kafka shows in the metrics, counted with the rpc above as one host counts.
    let env_submit = vec![(
        "CLIPGUARD_STORE__URL",
        samples.path("store").display().to_string(),
    )];
    common::submit(
        &broker.addr,
        &[samples.path("ball.webm"), samples.path("empty.mp4")],
        &env_submit,
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(&metrics, "/metrics");
        if text.contains("clipguard_media_processed_total 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for want in [
        "clipguard_media_received_total 3",
        "clipguard_media_processed_total 3",
        "clipguard_media_processing_seconds_bucket",
        "clipguard_media_in_flight",
    ] {
        assert!(text.contains(want), "{want} missing from metrics:\n{text}");
    }
    assert!(worker.alive());
    assert_eq!(worker.sigterm().code(), Some(0));
}

/// "Was this made by us?" over gRPC: `ReleaseStage/Release` is a dry run (it says the clip
/// would be indexed, and nothing is); a release worker indexes the clip once its verdict
/// arrives on `clips.verdicts` (the clip by claim check), and `ProvenanceLookup/Lookup` finds it
/// from a re-encoded, half-size copy sent inline; an unrelated video is not found, and a
/// request without media is refused as `INVALID_ARGUMENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_lookup_over_grpc_finds_an_allowed_clip_from_a_copy() {
    use clipguard_schemas::provenance_lookup_client::ProvenanceLookupClient;
    use clipguard_schemas::release_stage_client::ReleaseStageClient;
    use clipguard_schemas::{AudienceDecisions, Decision, LookupRequest, Verdict};

    let Some(conformance) = clipguard_testdata::conformance_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/threatexchange"),
        "vpdq/videos/chair-22-sd-grey-bar.mp4",
    ) else {
        return;
    };
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let dir = tempfile::tempdir().unwrap();
    let (store, index) = (dir.path().join("store"), dir.path().join("index"));
    std::fs::create_dir_all(store.join("clips")).unwrap();
    let videos = conformance.join("vpdq/videos");
    let chair = std::fs::read(videos.join("chair-22-sd-grey-bar.mp4")).unwrap();
    let stored = store.join("clips/chair.mp4");
    std::fs::write(&stored, &chair).unwrap();
    let copy = dir.path().join("copy.mp4");
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(
            format!(
                "filesrc location={} ! decodebin ! videoconvert ! videoscale \
                 ! video/x-raw,width=160,height=120 ! x264enc speed-preset=ultrafast bitrate=150 \
                 ! h264parse ! mp4mux ! filesink location={}",
                stored.display(),
                copy.display()
            )
            .split_whitespace(),
        )
        .status()
        .unwrap();
    assert!(status.success());

    let env = vec![
        ("CLIPGUARD_STORE__URL", store.display().to_string()),
        ("CLIPGUARD_RELEASE__INDEX_DIR", index.display().to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
    ];
    let (mut worker, addrs) = Proc::spawn_listening(
        "release",
        &[
            "stage",
            "release",
            "--brokers",
            &broker.addr,
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &env,
        &["grpc"],
        Duration::from_secs(30),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs["grpc"]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let allow = Decision::Allow as i32;
    let verdict = Verdict {
        clip_id: "clip-made-here".into(),
        decision: allow,
        audiences: Some(AudienceDecisions {
            adult: allow,
            under_18: allow,
            public_feed: allow,
        }),
        audience: "public_feed".into(),
        decided_at_ms: 1_796_000_000_000,
        media: Some(MediaRef {
            location: Some(Location::Uri(format!("file://{}", stored.display()))),
            sha256: clipguard_pipeline::store::sha256_hex(&chair),
            size_bytes: chair.len() as u64,
            content_type: "video/mp4".into(),
        }),
        ..Default::default()
    };
    let planned = ReleaseStageClient::new(channel.clone())
        .release(verdict.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(planned.dry_run && planned.indexed, "{planned:?}");
    let mut lookup = ProvenanceLookupClient::new(channel);
    let inline = |bytes: Vec<u8>| LookupRequest {
        media: Some(MediaRef {
            size_bytes: bytes.len() as u64,
            location: Some(Location::Inline(bytes)),
            ..Default::default()
        }),
    };
    let copy_bytes = std::fs::read(&copy).unwrap();
    let before = lookup
        .lookup(inline(copy_bytes.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        before.indexed_clips, 0,
        "a dry run indexes nothing: {before:?}"
    );

    // The verdict as the monitor publishes it.
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to("clips.verdicts")
                .key("clip-made-here")
                .payload(&prost::Message::encode_to_vec(&verdict)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(90);
    let found = loop {
        let found = lookup
            .lookup(inline(copy_bytes.clone()))
            .await
            .unwrap()
            .into_inner();
        if !found.matches.is_empty() || std::time::Instant::now() > until {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("copy: {found:?}");
    assert_eq!(found.matches.len(), 1, "{found:?}");
    assert_eq!(found.matches[0].clip_id, "clip-made-here");
    assert_eq!(found.matches[0].allowed_at_ms, 1_796_000_000_000);
    assert!(found.matches[0].target_match_pct >= 80.0, "{found:?}");
    assert_eq!((found.indexed_clips, found.index_version), (1, 1));
    let other = std::fs::read(videos.join("doorknob-hd-no-bar.mp4")).unwrap();
    let none = lookup.lookup(inline(other)).await.unwrap().into_inner();
    assert!(none.matches.is_empty(), "{none:?}");
    let refused = lookup
        .lookup(LookupRequest { media: None })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    worker.sigterm();
}

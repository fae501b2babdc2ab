//! The registry's stages served over loopback gRPC by the pipeline's one adapter: each stage's
//! call answers, is stamped as the hosts stamp a signal, maps its error to a status, and counts
//! into the stage's shared metrics.

#![allow(clippy::unwrap_used)]

use clipguard_pipeline::grpc::{GrpcConfig, serve};
use clipguard_pipeline::telemetry::render;
use clipguard_schemas::hash_match_stage_client::HashMatchStageClient;
use clipguard_schemas::monitor_stage_client::MonitorStageClient;
use clipguard_schemas::names::stage;
use clipguard_schemas::{DecideRequest, Decision, MediaExtract};
use clipguard_topology::Config;
use clipguard_topology::registry::Registry;
use prometheus_client::registry::Registry as MetricsRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_answers_through_the_one_adapter() {
    let cfg = Config::default();
    let mut metrics = MetricsRegistry::default();
    let mut servers = Vec::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for name in [stage::HASHMATCH, stage::MONITOR] {
        let mut built = Registry::default().build(name, &cfg).unwrap();
        built.register_metrics(&mut metrics);
        let mut stopped = stopped.clone();
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            built.routes,
            &built.services,
            &GrpcConfig::default(),
            async move {
                let _ = stopped.changed().await;
            },
        )
        .await
        .unwrap();
        servers.push(server);
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

//! Trace export (the default `otlp` feature): `clipguard run` exports its stage spans to an OTLP/gRPC
//! collector on loopback that speaks mutual TLS (`telemetry.otlp_ca`, `otlp_client_cert`,
//! `otlp_client_key`), and one clip's media and monitor spans share a trace id, linked through
//! the `traceparent` Kafka header.
//!
//! Run: `cargo test --test otlp`
#![cfg(feature = "otlp")]
// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clip_traces_across_stages_to_an_otlp_collector() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let collector = Collector::default();
    let pki = common::Pki::make();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            pki.read("server.crt"),
            pki.read("server.key"),
        ))
        .client_ca_root(Certificate::from_pem(pki.read("ca.crt")));
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let samples = common::Samples::make();
    let out = tokio::process::Command::new(common::bin())
        .args(["run", "--json"])
        .arg(samples.path("ball.webm"))
        .env("CLIPGUARD_STORE__URL", samples.path("store"))
        .env(
            "CLIPGUARD_TELEMETRY__OTLP_ENDPOINT",
            format!("https://localhost:{}", addr.port()),
        )
        .env("CLIPGUARD_TELEMETRY__OTLP_CA", pki.path("ca.crt"))
        .env(
            "CLIPGUARD_TELEMETRY__OTLP_CLIENT_CERT",
            pki.path("client.crt"),
        )
        .env(
            "CLIPGUARD_TELEMETRY__OTLP_CLIENT_KEY",
            pki.path("client.key"),
        )
        .env("CLIPGUARD_LOG", "info")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clip_id = verdict["clip_id"].as_str().unwrap().to_string();

    let spans = collector.0.lock().unwrap().clone();
    let of_clip: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "process" && attr(s, "clip_id").as_deref() == Some(clip_id.as_str()))
        .collect();
    // The monitor handles one signal per stage, so it has a span per signal, each a child of
    // the span of the stage that sent it; hashmatch's and transcribe's spans are children of
    // media's.
    let mut by_stage: HashMap<String, Vec<&Span>> = HashMap::new();
    for s in &of_clip {
        by_stage
            .entry(attr(s, "stage").unwrap_or_default())
            .or_default()
            .push(s);
    }
    let one = |stage: &str| -> &Span {
        let spans = by_stage.get(stage).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(spans.len(), 1, "one {stage} span: {:?}", by_stage.keys());
        spans[0]
    };
    let (media, hashmatch, transcribe, classify, classify_transcript) = (
        one("media"),
        one("hashmatch"),
        one("transcribe"),
        one("classify"),
        one("classify_transcript"),
    );
    let monitor = by_stage.get("monitor").cloned().unwrap_or_default();
    assert_eq!(monitor.len(), 5, "a monitor span per signal");
    for s in monitor
        .iter()
        .chain([&hashmatch, &transcribe, &classify, &classify_transcript])
    {
        assert_eq!(
            media.trace_id, s.trace_id,
            "one trace across the Kafka hops"
        );
    }
    assert_eq!(
        hashmatch.parent_span_id, media.span_id,
        "hashmatch's parent is media"
    );
    assert_eq!(
        transcribe.parent_span_id, media.span_id,
        "transcribe's parent is media"
    );
    assert_eq!(
        classify.parent_span_id, media.span_id,
        "classify's parent is media"
    );
    assert_eq!(
        classify_transcript.parent_span_id, transcribe.span_id,
        "classify_transcript's parent is transcribe (through clips.transcripts)"
    );
    let mut parents: Vec<&Vec<u8>> = monitor.iter().map(|s| &s.parent_span_id).collect();
    parents.sort();
    let mut want = vec![
        &media.span_id,
        &hashmatch.span_id,
        &transcribe.span_id,
        &classify.span_id,
        &classify_transcript.span_id,
    ];
    want.sort();
    assert_eq!(
        parents, want,
        "the monitor's spans are children of media's and the other stages'"
    );
    println!(
        "{} spans exported; clip {clip_id}: media -> hashmatch, transcribe, classify, all -> monitor, in trace {}",
        spans.len(),
        hex(&media.trace_id)
    );
    server.abort();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

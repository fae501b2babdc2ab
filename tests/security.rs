//! Every connection can be encrypted: a stage's gRPC server in mutual TLS refuses clients
//! without a certificate from its CA and serves those with one; the whole pipeline (`clipguard
//! run` against a broker) speaks SASL SCRAM-SHA-512 over mutual TLS to Kafka, its password from
//! the environment, and a client with a wrong password or an untrusted broker certificate gets
//! nothing.

// Tests and benchmarks report failure by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Broker, Pki, Proc, Samples, SecureBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// A call through `channel` to the health service: SERVING, or the error that stopped it.
async fn health_of(channel: tonic::transport::Channel) -> Result<ServingStatus, String> {
    let mut health = HealthClient::new(channel);
    let call = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(r)) => Ok(r.into_inner().status()),
        Ok(Err(status)) => Err(format!("{status}")),
        Err(_) => Err("no answer in 10 s".into()),
    }
}

/// Connects to `url` (lazily, so a refused handshake shows on the first call) and asks for health.
async fn try_health(
    url: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<ServingStatus, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("tls config: {e}"))?;
    }
    health_of(endpoint.connect_lazy()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_its_ca_and_serves_those_with_one() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topics(1);
    let pki = Pki::make();
    let store = tempfile::tempdir().unwrap();
    let env = vec![
        ("CLIPGUARD_STORE__URL", store.path().display().to_string()),
        ("CLIPGUARD_KAFKA__CREATE_TOPICS", "false".to_string()),
        (
            "CLIPGUARD_GRPC__TLS_CERT",
            pki.path("server.crt").display().to_string(),
        ),
        (
            "CLIPGUARD_GRPC__TLS_KEY",
            pki.path("server.key").display().to_string(),
        ),
        (
            "CLIPGUARD_GRPC__CLIENT_CA",
            pki.path("ca.crt").display().to_string(),
        ),
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
        ],
        &env,
        &["grpc"],
        Duration::from_secs(30),
    );
    let port = addrs["grpc"].port();
    let https = format!("https://localhost:{port}");
    let trust = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.read("ca.crt")))
            .domain_name("localhost")
    };

    // Plain text to a TLS port: no HTTP/2 session comes up.
    let plain = try_health(&format!("http://127.0.0.1:{port}"), None).await;
    println!("plain text: {plain:?}");
    assert!(plain.is_err(), "a plain-text client was served: {plain:?}");

    // TLS, trusting the server, but without a client certificate: refused in the handshake.
    let anonymous = try_health(&https, Some(trust())).await;
    println!("no client certificate: {anonymous:?}");
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served: {anonymous:?}"
    );

    // A client certificate from another CA: refused.
    let rogue = try_health(
        &https,
        Some(trust().identity(Identity::from_pem(
            pki.read("rogue-client.crt"),
            pki.read("rogue-client.key"),
        ))),
    )
    .await;
    println!("certificate from an untrusted CA: {rogue:?}");
    assert!(
        rogue.is_err(),
        "a client with an untrusted certificate was served: {rogue:?}"
    );

    // A client that does not trust the server's CA refuses the server.
    let distrust = try_health(
        &https,
        Some(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pki.read("rogue-ca.crt")))
                .domain_name("localhost")
                .identity(Identity::from_pem(
                    pki.read("client.crt"),
                    pki.read("client.key"),
                )),
        ),
    )
    .await;
    println!("server not trusted by the client: {distrust:?}");
    assert!(
        distrust.is_err(),
        "the client accepted a server its CA did not sign"
    );

    // With a certificate the CA signed: served.
    let served = try_health(
        &https,
        Some(trust().identity(Identity::from_pem(
            pki.read("client.crt"),
            pki.read("client.key"),
        ))),
    )
    .await;
    println!("client certificate from the CA: {served:?}");
    assert_eq!(served, Ok(ServingStatus::Serving));

    // The worker survived every refused handshake.
    assert!(worker.alive());
    assert_eq!(worker.sigterm().code(), Some(0));
}

/// A half-configured TLS section is refused at start, naming the key that is missing.
#[test]
fn a_tls_certificate_without_its_key_is_refused_at_start() {
    let pki = Pki::make();
    let out = std::process::Command::new(common::bin())
        .args([
            "stage",
            "media",
            "--brokers",
            "127.0.0.1:1",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("CLIPGUARD_GRPC__TLS_CERT", pki.path("server.crt"))
        .env("CLIPGUARD_GRPC__CLIENT_CA", pki.path("no-such-ca.crt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with half a TLS config");
    for want in [
        "grpc.tls_key: needed with grpc.tls_cert",
        "grpc.client_ca: ",
        "no-such-ca.crt",
    ] {
        assert!(stderr.contains(want), "`{want}` missing from: {stderr}");
    }
}

/// librdkafka settings for the secure broker, as an operator sets them (`kafka.client`), the
/// password from the environment.
fn secure_client(pki: &Pki, password: &str, ca: &str) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512".into()),
        ("sasl.username", common::SASL_USER.into()),
        ("sasl.password", password.into()),
        ("ssl.ca.location", pki.path(ca).display().to_string()),
        (
            "ssl.certificate.location",
            pki.path("client.crt").display().to_string(),
        ),
        (
            "ssl.key.location",
            pki.path("client.key").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The number of brokers in the metadata a librdkafka client with these settings gets within
/// 10 s, or its error.
fn metadata(brokers: &str, settings: &[(String, String)]) -> Result<usize, String> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers).set("log_level", "3");
    for (k, v) in settings {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string())
}

#[test]
fn the_pipeline_speaks_sasl_scram_over_mutual_tls_and_wrong_credentials_get_nothing() {
    let pki = Pki::make();
    let Some(broker) = SecureBroker::start(&pki, true) else {
        return;
    };

    // Plain text, a wrong password, a broker certificate from a CA the client does not trust,
    // and no client certificate: no metadata. Each case differs from the settings that do get
    // metadata (below) in that one respect only.
    let wrong_password = secure_client(&pki, "not the password", "ca.crt");
    let untrusted = secure_client(&pki, common::SASL_PASSWORD, "rogue-ca.crt");
    let no_cert: Vec<(String, String)> = secure_client(&pki, common::SASL_PASSWORD, "ca.crt")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("ssl.certificate") && !k.starts_with("ssl.key"))
        .collect();
    let refused = std::thread::scope(|s| {
        let cases = [
            ("plain text", Vec::new()),
            ("wrong password", wrong_password),
            ("untrusted broker certificate", untrusted),
            ("no client certificate", no_cert),
        ];
        let handles: Vec<_> = cases
            .into_iter()
            .map(|(what, settings)| {
                let addr = broker.addr.clone();
                s.spawn(move || (what, metadata(&addr, &settings)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (what, result) in &refused {
        println!("{what}: {result:?}");
        assert!(result.is_err(), "{what}: got metadata {result:?}");
    }
    let good = secure_client(&pki, common::SASL_PASSWORD, "ca.crt");
    assert_eq!(
        metadata(&broker.addr, &good),
        Ok(1),
        "the right settings get metadata"
    );

    // The whole pipeline over SASL_SSL: topics created, a clip moderated, its verdict read back.
    let samples = Samples::make();
    let mut run = Command::new(common::bin());
    run.args([
        "run",
        "--json",
        "--timeout-s",
        "120",
        "--brokers",
        &broker.addr,
    ])
    .arg(samples.path("ball.webm"))
    .env("CLIPGUARD_STORE__URL", samples.path("store"));
    for (k, v) in &good {
        run.env(format!("CLIPGUARD_KAFKA__CLIENT__{}", k.to_uppercase()), v);
    }
    let out = run.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run over SASL_SSL failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    println!(
        "verdict over SASL_SSL: {} {}",
        verdict["decision"], verdict["rationale"]
    );
    assert_eq!(verdict["decision"], "allow", "{verdict}");
}

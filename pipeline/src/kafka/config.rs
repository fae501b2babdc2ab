//! How to reach the brokers, and how the Kafka host runs a stage.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::error::PipelineError;
use crate::topics;

/// How to reach the brokers and how topics are created.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Partitions for topics clipguard creates. Keep it equal across topics: a clip's messages
    /// then share a partition number everywhere, and one monitor sees all of a clip's signals.
    pub partitions: i32,
    /// Replication factor for topics clipguard creates.
    pub replication: i32,
    /// Create missing topics at start (turn off where topics are managed, e.g. by Strimzi).
    pub create_topics: bool,
    /// Consumer session timeout; a killed worker's partitions move after this long.
    pub session_timeout_ms: u32,
    /// Extra librdkafka properties (security, SASL, ...). From the environment a value is taken
    /// as written (`CLIPGUARD_KAFKA__CLIENT__SASL.PASSWORD=0x1F` stays `0x1F`); in the file, TOML
    /// numbers and booleans become librdkafka's strings. The settings the pipeline's guarantees
    /// rest on are clipguard's own and win over these: the producer's `acks`,
    /// `enable.idempotence`, `linger.ms`, `delivery.timeout.ms` and `message.max.bytes`, and the
    /// consumers' group, offset and session settings.
    #[serde(deserialize_with = "properties")]
    pub client: BTreeMap<String, String>,
}

/// Shows every setting but the values of secret properties (passwords, secrets, inline keys), so
/// a config printed in a log or an error carries no credential.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = [
                    "password",
                    "passphrase",
                    "secret",
                    ".pem",
                    "jaas",
                    "oauthbearer",
                ]
                .iter()
                .any(|w| lower.contains(w));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("create_topics", &self.create_topics)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("client", &client)
            .finish()
    }
}

/// librdkafka properties: string values, with TOML numbers and booleans written as strings.
fn properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    let map = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(s) => s,
                Value::Integer(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            partitions: 6,
            replication: 1,
            create_topics: true,
            session_timeout_ms: 10_000,
            client: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.brokers.trim().is_empty() {
            problems.push("kafka.brokers: must name at least one broker".into());
        }
        if self.partitions < 1 {
            problems.push(format!("kafka.partitions: {} is not >= 1", self.partitions));
        }
        if self.replication < 1 {
            problems.push(format!(
                "kafka.replication: {} is not >= 1",
                self.replication
            ));
        }
        if !(1_000..=300_000).contains(&self.session_timeout_ms) {
            problems.push(format!(
                "kafka.session_timeout_ms: {} is outside 1000..=300000",
                self.session_timeout_ms
            ));
        }
    }

    /// Base client configuration shared by consumers, producers and admin clients.
    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.brokers);
        cc.set("log_level", "4");
        for (k, v) in &self.client {
            cc.set(k, v);
        }
        cc
    }

    /// An idempotent producer tuned for low latency.
    pub fn producer(&self) -> Result<FutureProducer, PipelineError> {
        let mut cc = self.client_config();
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("delivery.timeout.ms", "30000")
            .set("message.max.bytes", "1000000");
        Ok(cc.create()?)
    }

    /// Creates the pipeline's topics where missing (compacted ones with `cleanup.policy=compact`).
    pub async fn ensure_topics(&self) -> Result<(), PipelineError> {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
        let new: Vec<NewTopic<'_>> = topics::ALL
            .iter()
            .map(|(name, compacted)| {
                let t = NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                );
                if *compacted {
                    t.set("cleanup.policy", "compact")
                } else {
                    t
                }
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for result in admin.create_topics(&new, &opts).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(PipelineError::Kafka(KafkaError::AdminOp(code))).inspect_err(
                        |_| tracing::error!(topic = %name, error = %code, "topic creation failed"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// How the Kafka host runs a stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    /// Messages processed at once per worker (bounded in-flight work).
    pub max_in_flight: usize,
    /// Attempts per message before it is dead-lettered.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time.
    pub retry_backoff_ms: u64,
    /// How often finished offsets are committed.
    pub commit_interval_ms: u64,
    /// On SIGTERM, how long in-flight work may take to finish before the worker exits anyway
    /// (unfinished work is redone by the next owner).
    pub drain_timeout_s: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            max_attempts: 3,
            retry_backoff_ms: 200,
            commit_interval_ms: 100,
            drain_timeout_s: 30,
        }
    }
}

impl HostConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.max_in_flight == 0 {
            problems.push("host.max_in_flight: must be >= 1".into());
        }
        if self.max_attempts == 0 {
            problems.push("host.max_attempts: must be >= 1".into());
        }
        if self.commit_interval_ms == 0 {
            problems.push("host.commit_interval_ms: must be >= 1".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build speaks TLS and SASL/SCRAM: a client configured for a secured cluster (as the
    /// prod overlay configures every stage) is accepted by librdkafka instead of refused with
    /// "OpenSSL not available at build time".
    #[test]
    fn a_sasl_ssl_scram_client_can_be_created() {
        let mut kafka = KafkaConfig::default();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "clipguard"),
            ("sasl.password", "not-a-secret"),
        ] {
            kafka.client.insert(k.into(), v.into());
        }
        let producer = kafka.producer();
        assert!(producer.is_ok(), "{:?}", producer.err());
        // Printed, the config keeps its password to itself.
        let shown = format!("{kafka:?}");
        assert!(
            shown.contains("SCRAM-SHA-512") && !shown.contains("not-a-secret"),
            "{shown}"
        );
    }

    /// A client property from the environment reaches librdkafka as written (a number, a boolean
    /// or a password that TOML would read as a number), not as a type error or a converted value.
    #[test]
    fn client_properties_take_numbers_and_booleans() {
        let env = [
            ("CLIPGUARD_KAFKA__CLIENT__LINGER.MS", "5"),
            (
                "CLIPGUARD_KAFKA__CLIENT__ENABLE.SSL.CERTIFICATE.VERIFICATION",
                "true",
            ),
            ("CLIPGUARD_KAFKA__CLIENT__SASL.USERNAME", "clipguard"),
            // A password that TOML would read as the number 31 reaches librdkafka as written.
            ("CLIPGUARD_KAFKA__CLIENT__SASL.PASSWORD", "0x1F"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        #[derive(Debug, Deserialize)]
        struct Only {
            kafka: KafkaConfig,
        }
        impl crate::config::Validate for Only {
            fn validate(&self, problems: &mut Vec<String>) {
                self.kafka.validate(problems);
            }
        }
        let cfg: Only = crate::config::load(None, env).unwrap();
        let client = &cfg.kafka.client;
        assert_eq!(client["linger.ms"], "5");
        assert_eq!(client["enable.ssl.certificate.verification"], "true");
        assert_eq!(client["sasl.username"], "clipguard");
        assert_eq!(client["sasl.password"], "0x1F");
    }
}

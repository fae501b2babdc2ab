//! An embedded Kafka-protocol broker for the demo and fast tests: librdkafka's in-process mock
//! cluster. Stages talk to it over TCP on loopback with the same client code as production.
//!
//! Limits of the mock (why production and the end-to-end tests use a real broker): it keeps at
//! most 5 MiB or 100,000 messages per partition and silently drops older data, its transactions
//! are not real, and it has no admin API for topic creation (topics are created here instead).

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::error::PipelineError;
use crate::topics;

/// A running in-process broker; stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap_servers())
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with every pipeline topic (`partitions` each).
    pub fn start(partitions: i32) -> Result<Self, PipelineError> {
        let cluster = MockCluster::new(1)?;
        for (topic, _) in topics::ALL {
            cluster.create_topic(topic, partitions, 1)?;
        }
        Ok(Self { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

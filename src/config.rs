//! The binary's configuration: one TOML file, every key overridable by `CLIPGUARD_*`.

use clipguard_classify::stage::ClassifyConfig;
use clipguard_hashmatch::stage::HashmatchConfig;
use clipguard_media::MediaConfig;
use clipguard_monitor::MonitorConfig;
use clipguard_pipeline::config::Validate;
use clipguard_pipeline::kafka::{HostConfig, KafkaConfig};
use clipguard_pipeline::store::StoreConfig;
use clipguard_pipeline::telemetry::TelemetryConfig;
use clipguard_transcribe::TranscribeConfig;
use serde::Deserialize;

/// Everything configurable, by section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Brokers and topic creation.
    pub kafka: KafkaConfig,
    /// How the Kafka host runs stages (in-flight bound, retries, drain).
    pub host: HostConfig,
    /// Claim-check media store.
    pub store: StoreConfig,
    /// Media stage.
    pub media: MediaConfig,
    /// Hash-matching stage and the bank folder.
    pub hashmatch: HashmatchConfig,
    /// Transcription stage: model, decoding, voice-activity gate.
    pub transcribe: TranscribeConfig,
    /// Classifier stage: frame models, batching.
    pub classify: ClassifyConfig,
    /// Monitor stage.
    pub monitor: MonitorConfig,
    /// Logs.
    pub telemetry: TelemetryConfig,
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        self.kafka.validate(problems);
        self.host.validate(problems);
        self.store.validate(problems);
        self.media.validate(problems);
        self.hashmatch.validate(problems);
        self.transcribe.validate(problems);
        self.classify.validate(problems);
        self.monitor.validate(problems);
        self.telemetry.validate(problems);
    }
}

/// Loads the config from `file` (or `CLIPGUARD_CONFIG`) and the environment.
pub fn load(file: Option<&std::path::Path>) -> Result<Config, clipguard_pipeline::PipelineError> {
    let from_env = std::env::var_os("CLIPGUARD_CONFIG").map(std::path::PathBuf::from);
    let file = file.map(std::path::Path::to_path_buf).or(from_env);
    clipguard_pipeline::config::load(file.as_deref(), std::env::vars())
}

//! The configuration: one TOML file, every key overridable by `CLIPGUARD_*` (see
//! [`clipguard_pipeline::config`] for the rules).

use clipguard_classify::stage::ClassifyConfig;
use clipguard_hashmatch::stage::HashmatchConfig;
use clipguard_media::MediaConfig;
use clipguard_monitor::MonitorConfig;
use clipguard_pipeline::config::Validate;
use clipguard_pipeline::grpc::GrpcConfig;
use clipguard_pipeline::kafka::{HostConfig, KafkaConfig};
use clipguard_pipeline::store::StoreConfig;
use clipguard_pipeline::telemetry::TelemetryConfig;
use clipguard_policy::PolicyConfig;
use clipguard_release::ReleaseConfig;
use clipguard_review::ReviewConfig;
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
    /// Release stage: renditions of allowed clips, the "made by us" index.
    pub release: ReleaseConfig,
    /// Review stage: the cases database and leases.
    pub review: ReviewConfig,
    /// Which policy decides: the monitor's verdicts and the prompt check alike.
    pub policy: PolicyConfig,
    /// Logs.
    pub telemetry: TelemetryConfig,
    /// The gRPC servers' TLS and mutual TLS.
    pub grpc: GrpcConfig,
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
        self.release.validate(problems);
        self.review.validate(problems);
        self.policy.validate(problems);
        // The expected stages are checked against this build's pipeline.
        match crate::registry::Registry::default().graph() {
            Ok(graph) => {
                if let Err(e) = clipguard_monitor::Wait::new(&self.monitor, &graph) {
                    problems.push(e);
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        self.telemetry.validate(problems);
        self.grpc.validate(problems);
    }
}

impl Config {
    /// The manifest models the configured stages load: the transcription model (when it is a
    /// manifest name, not a file path), the frame classifiers, the text encoders and tokenizers
    /// (the first and the policy's refining one), the face detector and age model, and ONNX
    /// Runtime when a frame model runs on it.
    pub fn models(&self) -> Vec<String> {
        let c = &self.classify;
        let mut out: Vec<String> = Vec::new();
        let transcribe = &self.transcribe.model;
        if !transcribe.contains('/') && !transcribe.ends_with(".bin") {
            out.push(transcribe.clone());
        }
        out.extend(c.frame_models.iter().cloned());
        out.extend([c.text_model.clone(), c.text_tokenizer.clone()]);
        out.extend(c.text().refine_models());
        out.extend([c.face_detector.clone(), c.age_model.clone()]);
        if !c.likeness_dir.is_empty() {
            out.extend([c.face_landmarks.clone(), c.face_descriptor.clone()]);
        }
        if c.uses_onnxruntime() {
            out.push(c.onnxruntime.clone());
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|m| !m.is_empty() && seen.insert(m.clone()));
        out
    }
}

/// Loads the config from `file` (or `CLIPGUARD_CONFIG`) and the environment.
pub fn load(file: Option<&std::path::Path>) -> Result<Config, clipguard_pipeline::PipelineError> {
    let from_env = std::env::var_os("CLIPGUARD_CONFIG").map(std::path::PathBuf::from);
    let file = file.map(std::path::Path::to_path_buf).or(from_env);
    clipguard_pipeline::config::load(file.as_deref(), std::env::vars())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Without names, `models fetch` fetches what the default stages load, not the test-only
    /// models of the manifest.
    #[test]
    fn the_default_config_needs_the_demo_models_only() {
        let models = Config::default().models();
        assert_eq!(
            models,
            [
                "whisper-tiny.en",
                "open-nsfw",
                "minilm-l6-int8",
                "minilm-l6-tokenizer",
                "mpnet-base-v2",
                "mpnet-base-v2-tokenizer",
                "blazeface-back",
                "age-v1"
            ]
        );
        // The shipped backend entry for image-safety-s is valid while the model is not listed,
        // and fetches ONNX Runtime once it is.
        let mut cfg = Config::default();
        let mut problems = Vec::new();
        cfg.classify.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        cfg.classify.frame_models.push("image-safety-s".into());
        let models = cfg.models();
        assert!(models.contains(&"image-safety-s".to_string()), "{models:?}");
        assert!(models.contains(&"onnxruntime".to_string()), "{models:?}");
        let mut cfg = Config::default();
        cfg.classify.text_refine = false;
        assert!(
            !cfg.models().iter().any(|m| m.starts_with("mpnet")),
            "{:?}",
            cfg.models()
        );
        cfg.classify.backends.insert(
            "open-nsfw".into(),
            clipguard_classify::stage::Backend::Onnxruntime,
        );
        cfg.transcribe.model = "/opt/models/ggml-small.bin".into();
        let models = cfg.models();
        assert!(models.contains(&"onnxruntime".to_string()), "{models:?}");
        assert!(!models.iter().any(|m| m.contains("ggml")), "{models:?}");
    }

    /// Every section, nested ones included, reports its unknown keys by name, and all of them
    /// come back in one error (no section stops at its first).
    #[test]
    fn an_unknown_key_in_every_section_is_reported_at_once() {
        let sections = [
            "kafka",
            "host",
            "store",
            "media",
            "hashmatch",
            "transcribe",
            "transcribe.vad",
            "classify",
            "monitor",
            "monitor.reasoning",
            "release",
            "review",
            "policy",
            "telemetry",
            "grpc",
        ];
        let mut text = String::new();
        for s in sections {
            text.push_str(&format!("[{s}]\nno_such_key = 1\nanother_typo = \"x\"\n"));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clipguard.toml");
        std::fs::write(&path, text).unwrap();
        let err = clipguard_pipeline::config::load::<Config>(Some(&path), Vec::new()).unwrap_err();
        let clipguard_pipeline::PipelineError::Config(problems) = err else {
            panic!("expected a config error, got {err}");
        };
        for s in sections {
            for key in ["no_such_key", "another_typo"] {
                let want = format!("unknown key `{s}.{key}`");
                assert!(
                    problems.contains(&want),
                    "{want} missing from {problems:#?}"
                );
            }
        }
        assert_eq!(problems.len(), 2 * sections.len(), "{problems:#?}");
    }
}

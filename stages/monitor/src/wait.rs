//! What a clip's verdict waits for, derived from the pipeline's graph
//! ([`clipguard_pipeline::graph`]): the expected stages, each with the stages whose output it
//! consumes, and for how long.

use clipguard_pipeline::graph::Graph;
use clipguard_schemas::Signal;

use crate::MonitorConfig;

/// The expected stages of a clip and their dependencies. A stage is not waited for once a stage
/// it depends on failed on the clip (an error signal): nothing will come from it. So an
/// undecodable clip (the media stage failed) is decided at once, and a failed transcription
/// does not hold the verdict for the transcript classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    stages: Vec<(String, Vec<&'static str>)>,
    /// Seconds to wait for the expected signals after the first one was produced.
    pub timeout_s: f64,
}

impl Default for Wait {
    /// Every stage of the standard pipeline, the default deadline.
    fn default() -> Self {
        Self {
            stages: stages(&Graph::default(), &[])
                .expect("every stage of the standard graph that signals is expected"),
            timeout_s: MonitorConfig::default().timeout_s,
        }
    }
}

impl Wait {
    /// `cfg.expected_stages` (empty: every stage of `graph` that signals) with their
    /// dependencies in `graph`. A name that is not a signalling stage of `graph` is an error
    /// naming the key.
    pub fn new(cfg: &MonitorConfig, graph: &Graph) -> Result<Self, String> {
        Ok(Self {
            stages: stages(graph, &cfg.expected_stages)?,
            timeout_s: cfg.timeout_s,
        })
    }

    /// Exactly `expected` of the standard pipeline (each must be one of its signalling stages).
    pub fn of(expected: &[&str]) -> Result<Self, String> {
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        Ok(Self {
            stages: stages(&Graph::default(), &expected)?,
            ..Self::default()
        })
    }

    /// The expected stages, in order.
    pub fn stages(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|(s, _)| s.as_str())
    }

    /// Expected stages with no signal among `signals` yet, less those that cannot answer.
    pub fn missing<'w>(&'w self, signals: &[&Signal]) -> Vec<&'w str> {
        let failed = |stage: &str| {
            signals
                .iter()
                .any(|s| s.stage == stage && s.error.is_some())
        };
        self.stages
            .iter()
            .filter(|(e, _)| !signals.iter().any(|s| s.stage == *e))
            .filter(|(_, upstream)| !upstream.iter().any(|u| failed(u)))
            .map(|(e, _)| e.as_str())
            .collect()
    }
}

fn stages(graph: &Graph, expected: &[String]) -> Result<Vec<(String, Vec<&'static str>)>, String> {
    let signalling: Vec<&str> = graph.signalling().collect();
    let names: Vec<String> = if expected.is_empty() {
        signalling.iter().map(|s| s.to_string()).collect()
    } else {
        expected.to_vec()
    };
    names
        .into_iter()
        .map(|s| {
            if signalling.contains(&s.as_str()) {
                let upstream = graph.upstream(&s);
                Ok((s, upstream))
            } else if graph.node(&s).is_some() {
                Err(format!(
                    "monitor.expected_stages: stage `{s}` produces no signal (stages with a signal: {})",
                    signalling.join(", ")
                ))
            } else {
                Err(format!(
                    "monitor.expected_stages: unknown stage `{s}` (stages with a signal: {})",
                    signalling.join(", ")
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clipguard_pipeline::graph::{self, Node};
    use clipguard_pipeline::topics;
    use clipguard_schemas::StageError;
    use clipguard_schemas::names::stage;

    use super::*;

    fn signal(stage: &str, failed: bool) -> Signal {
        Signal {
            stage: stage.into(),
            error: failed.then(StageError::default),
            ..Default::default()
        }
    }

    #[test]
    fn by_default_every_signalling_stage_is_awaited_and_a_failed_feeder_releases_its_dependants() {
        let w = Wait::default();
        assert_eq!(
            w.stages().collect::<Vec<_>>(),
            graph::Graph::default().signalling().collect::<Vec<_>>()
        );
        let transcribe_failed = [signal(stage::MEDIA, false), signal(stage::TRANSCRIBE, true)];
        let refs: Vec<&Signal> = transcribe_failed.iter().collect();
        assert_eq!(
            w.missing(&refs),
            vec![stage::HASHMATCH, stage::CLASSIFY],
            "classify_transcript cannot answer without a transcript"
        );
        let media_failed = [signal(stage::MEDIA, true)];
        let refs: Vec<&Signal> = media_failed.iter().collect();
        assert!(w.missing(&refs).is_empty());
    }

    #[test]
    fn a_stage_added_to_the_graph_is_awaited_without_naming_it() {
        const EXTRA: Node = Node {
            stage: "watermark",
            consumes: topics::MEDIA,
            produces: &[topics::SIGNALS],
            state: None,
        };
        let g = Graph::new(graph::STANDARD.iter().copied().chain([EXTRA])).unwrap();
        let w = Wait::new(&MonitorConfig::default(), &g).unwrap();
        assert!(w.stages().any(|s| s == "watermark"));
        let e = Wait::of(&["media", "watermark"]).unwrap_err();
        assert!(e.contains("unknown stage `watermark`"), "{e}");
    }
}

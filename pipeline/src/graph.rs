//! The pipeline's edges, declared once: for each stage, the topic it consumes and the topics it
//! produces on. Everything that needs to know who feeds whom reads it from here: the hosts
//! subscribe a stage to its node's topic, the registry builds stages by node, and the monitor
//! derives which signals a clip waits for and which stages cannot answer once another failed.
//!
//! A stage with a signal of its own produces on [`topics::SIGNALS`]; the monitor consumes that
//! topic. A stage that consumes another's output depends on it: when that one fails on a clip,
//! nothing comes from its dependants.

use crate::topics;
use clipguard_schemas::names::stage;

/// One stage's place in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The stage name: consumer group suffix, metric prefix and `Signal.stage`.
    pub stage: &'static str,
    /// The topic the stage consumes.
    pub consumes: &'static str,
    /// Every topic the stage produces on, its signal's and dead letters' included.
    pub produces: &'static [&'static str],
    /// A topic whose records are the stage's memory across restarts, keyed by clip id (the
    /// monitor's: the verdicts it and its peers published). The Kafka host reads all of it
    /// before consuming, follows it while running, and at every partition assignment reads what
    /// it holds before processing more input; each record goes to
    /// [`crate::Stage::restore`]. `None`: the stage keeps nothing across restarts.
    pub state: Option<&'static str>,
}

impl Node {
    /// Whether the stage contributes a signal that the monitor joins.
    pub fn signals(&self) -> bool {
        self.produces.contains(&topics::SIGNALS)
    }
}

pub const MEDIA: Node = Node {
    stage: stage::MEDIA,
    consumes: topics::SUBMITTED,
    produces: &[topics::MEDIA, topics::SIGNALS, topics::DLQ],
    state: None,
};
pub const HASHMATCH: Node = Node {
    stage: stage::HASHMATCH,
    consumes: topics::MEDIA,
    produces: &[topics::SIGNALS, topics::DLQ],
    state: None,
};
pub const TRANSCRIBE: Node = Node {
    stage: stage::TRANSCRIBE,
    consumes: topics::MEDIA,
    produces: &[topics::TRANSCRIPTS, topics::SIGNALS, topics::DLQ],
    state: None,
};
pub const CLASSIFY: Node = Node {
    stage: stage::CLASSIFY,
    consumes: topics::MEDIA,
    produces: &[topics::SIGNALS, topics::DLQ],
    state: None,
};
pub const CLASSIFY_TRANSCRIPT: Node = Node {
    stage: stage::CLASSIFY_TRANSCRIPT,
    consumes: topics::TRANSCRIPTS,
    produces: &[topics::SIGNALS, topics::DLQ],
    state: None,
};
pub const MONITOR: Node = Node {
    stage: stage::MONITOR,
    consumes: topics::SIGNALS,
    produces: &[topics::VERDICTS, topics::VERDICTS_SHADOW, topics::DLQ],
    state: Some(topics::VERDICTS),
};

/// After the verdict: renditions of allowed clips and the "made by us" index.
pub const RELEASE: Node = Node {
    stage: stage::RELEASE,
    consumes: topics::VERDICTS,
    produces: &[topics::RENDITIONS, topics::DLQ],
    state: None,
};

/// After the verdict: `review` verdicts become cases; reviewers' decisions become the clip's next
/// verdict revision and an enforcement record.
pub const REVIEW: Node = Node {
    stage: stage::REVIEW,
    consumes: topics::VERDICTS,
    produces: &[topics::VERDICTS, topics::ENFORCEMENT, topics::DLQ],
    state: None,
};

/// clipguard's own stages, in pipeline order.
pub const STANDARD: &[Node] = &[
    MEDIA,
    HASHMATCH,
    TRANSCRIBE,
    CLASSIFY,
    CLASSIFY_TRANSCRIPT,
    MONITOR,
    RELEASE,
    REVIEW,
];

/// Why a set of nodes is not a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("stage `{0}` is declared twice")]
    Duplicate(&'static str),
    #[error("stage `{stage}` consumes `{topic}`, which no stage produces")]
    Unfed {
        stage: &'static str,
        topic: &'static str,
    },
    /// The stage built for a node calls itself by another name (its consumer group, metrics
    /// and signals would not be the node's).
    #[error("the stage built for `{node}` calls itself `{stage}`")]
    Misnamed {
        node: &'static str,
        stage: &'static str,
    },
}

/// A set of stages and the edges between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    nodes: Vec<Node>,
}

impl Default for Graph {
    /// [`STANDARD`].
    fn default() -> Self {
        Self {
            nodes: STANDARD.to_vec(),
        }
    }
}

impl Graph {
    /// The pipeline of `nodes`: each stage once, each consuming [`topics::SUBMITTED`] (what
    /// generators publish) or what another stage produces.
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Result<Self, GraphError> {
        let nodes: Vec<Node> = nodes.into_iter().collect();
        for (i, n) in nodes.iter().enumerate() {
            if nodes[..i].iter().any(|m| m.stage == n.stage) {
                return Err(GraphError::Duplicate(n.stage));
            }
            if n.consumes != topics::SUBMITTED
                && !nodes.iter().any(|m| m.produces.contains(&n.consumes))
            {
                return Err(GraphError::Unfed {
                    stage: n.stage,
                    topic: n.consumes,
                });
            }
        }
        Ok(Self { nodes })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, stage: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.stage == stage)
    }

    /// The stages that contribute a signal, in declaration order.
    pub fn signalling(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.nodes.iter().filter(|n| n.signals()).map(|n| n.stage)
    }

    /// The stages whose output `stage` consumes, directly or through others, nearest first.
    pub fn upstream(&self, stage: &str) -> Vec<&'static str> {
        let mut found: Vec<&'static str> = Vec::new();
        let mut frontier: Vec<&'static str> =
            self.node(stage).map(|n| n.consumes).into_iter().collect();
        while let Some(topic) = frontier.pop() {
            for n in self.nodes.iter().filter(|n| n.produces.contains(&topic)) {
                if n.stage != stage && !found.contains(&n.stage) {
                    found.push(n.stage);
                    frontier.insert(0, n.consumes);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_standard_pipeline_is_a_graph_and_every_stage_before_the_verdict_signals() {
        let g = Graph::new(STANDARD.iter().copied()).unwrap();
        assert_eq!(g, Graph::default());
        assert_eq!(
            g.signalling().collect::<Vec<_>>(),
            stage::ALL
                .iter()
                .copied()
                .filter(|s| ![stage::MONITOR, stage::RELEASE, stage::REVIEW].contains(s))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            g.nodes().iter().map(|n| n.stage).collect::<Vec<_>>(),
            stage::ALL
        );
    }

    #[test]
    fn upstream_follows_topics_back_to_the_media_stage() {
        let g = Graph::default();
        assert_eq!(g.upstream(stage::MEDIA), Vec::<&str>::new());
        assert_eq!(g.upstream(stage::HASHMATCH), vec![stage::MEDIA]);
        assert_eq!(
            g.upstream(stage::CLASSIFY_TRANSCRIPT),
            vec![stage::TRANSCRIBE, stage::MEDIA]
        );
        // The monitor consumes every signal, so every signalling stage feeds it.
        let mut feeding = g.upstream(stage::MONITOR);
        feeding.sort();
        let mut signalling: Vec<_> = g.signalling().collect();
        signalling.sort();
        assert_eq!(feeding, signalling);
    }

    #[test]
    fn a_stage_declared_twice_or_fed_by_nothing_is_refused() {
        assert_eq!(
            Graph::new([MEDIA, MEDIA]),
            Err(GraphError::Duplicate(stage::MEDIA))
        );
        let e = Graph::new([HASHMATCH]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stage `hashmatch` consumes `clips.media`, which no stage produces"
        );
    }
}

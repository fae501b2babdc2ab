//! A load profile: how many clips, at what rate, of which kinds, through how many replicas of
//! each stage, within what time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// A load profile (TOML; `loadtest/profiles/*.toml`). Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Clips submitted and measured (after one warm-up clip that is not).
    pub clips: usize,
    /// Target submission rate in clips per second (open loop: clip `i` is due at `i / rate`
    /// seconds, whether or not earlier clips have their verdicts).
    pub rate: f64,
    /// Bound on the measured run, from the first submission to the last verdict; clips without
    /// a verdict by then are reported as missing.
    pub max_seconds: f64,
    /// Partitions of every topic (the replica ceiling of each stage).
    pub partitions: u32,
    /// Replicas per stage; stages not named run one.
    #[serde(default)]
    pub replicas: BTreeMap<String, usize>,
    /// Configuration for every stage process, as `CLIPGUARD_SECTION__KEY` variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The clip pool: kinds of generated clips, submitted round-robin by weight.
    pub clip: Vec<ClipKind>,
    /// A fault run: stage processes killed with SIGKILL and restarted, the broker restarted.
    #[serde(default)]
    pub faults: Option<Faults>,
}

/// Faults injected while clips flow; the run then checks that every clip still gets exactly
/// one decision.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// A random stage process (any stage, any replica, one that is running) gets SIGKILL this
    /// often.
    pub kill_every_s: f64,
    /// A killed process is started again this long after its kill. Keep it above the consumer
    /// session timeout: the test broker (tansu 0.6) gives no partitions to a member that rejoins
    /// before its dead predecessor's session expired.
    #[serde(default = "restart_after")]
    pub restart_after_s: f64,
    /// The broker is killed (SIGKILL) once this many clips have been submitted and started
    /// again on the same port and data after `broker_down_s`; 0 = never.
    #[serde(default)]
    pub broker_restart_after_clips: usize,
    #[serde(default = "broker_down")]
    pub broker_down_s: f64,
    /// After the last verdict, verdicts are still read this long (a clip decided twice shows
    /// here).
    #[serde(default = "settle")]
    pub settle_s: f64,
    /// Seed of the choice of victims.
    #[serde(default)]
    pub seed: u64,
    /// Stages whose (first running) process is killed first, in this order, before the
    /// random choice begins.
    #[serde(default)]
    pub first: Vec<String>,
}

fn restart_after() -> f64 {
    8.0
}

fn broker_down() -> f64 {
    2.0
}

fn settle() -> f64 {
    15.0
}

/// Generated clips of one kind (GStreamer test sources, espeak-ng speech).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipKind {
    /// File stem in the pool folder.
    pub name: String,
    pub duration_s: f64,
    pub width: u32,
    pub height: u32,
    /// `speech` (espeak-ng sentences), `tone` (a sine) or `none` (no audio track).
    pub audio: Audio,
    /// Share of the submissions, relative to the other kinds.
    #[serde(default = "one")]
    pub weight: u32,
    /// Cut to half its bytes (a truncated file: the media stage refuses it, the monitor blocks
    /// it fail-closed).
    #[serde(default)]
    pub broken: bool,
}

fn one() -> u32 {
    1
}

/// A clip kind's sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audio {
    Speech,
    Tone,
    None,
}

/// The stages a pipeline runs, in order (one process each per replica).
pub const STAGES: &[&str] = clipguard_schemas::names::stage::ALL;

impl Profile {
    /// Reads and validates a profile, reporting every problem at once.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let profile: Profile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let problems = profile.problems();
        anyhow::ensure!(
            problems.is_empty(),
            "{}: {}",
            path.display(),
            problems.join("; ")
        );
        Ok(profile)
    }

    /// Everything wrong with the profile.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.clips == 0 {
            p.push("clips must be at least 1".to_string());
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            p.push(format!("rate {} must be > 0", self.rate));
        }
        if !(self.max_seconds > 0.0 && self.max_seconds.is_finite()) {
            p.push(format!("max_seconds {} must be > 0", self.max_seconds));
        }
        if self.partitions == 0 {
            p.push("partitions must be at least 1".to_string());
        }
        for (stage, n) in &self.replicas {
            if !STAGES.contains(&stage.as_str()) {
                p.push(format!(
                    "replicas: unknown stage `{stage}` (stages: {STAGES:?})"
                ));
            }
            if *n == 0 || *n > self.partitions as usize {
                p.push(format!(
                    "replicas.{stage} = {n}: must be 1..={} (the partitions)",
                    self.partitions
                ));
            }
        }
        for key in self.env.keys() {
            if !key.starts_with("CLIPGUARD_") {
                p.push(format!("env: `{key}` is not a CLIPGUARD_ variable"));
            }
        }
        if self.clip.is_empty() {
            p.push("no [[clip]] kinds".to_string());
        }
        if let Some(f) = &self.faults {
            for (name, v) in [
                ("kill_every_s", f.kill_every_s),
                ("restart_after_s", f.restart_after_s),
                ("broker_down_s", f.broker_down_s),
                ("settle_s", f.settle_s),
            ] {
                if !(v > 0.0 && v <= 3600.0) {
                    p.push(format!("faults.{name} {v} must be in (0, 3600]"));
                }
            }
            for stage in &f.first {
                if !STAGES.contains(&stage.as_str()) {
                    p.push(format!("faults.first: unknown stage `{stage}`"));
                }
            }
            if f.broker_restart_after_clips > self.clips {
                p.push(format!(
                    "faults.broker_restart_after_clips {} is more than the {} clips",
                    f.broker_restart_after_clips, self.clips
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.clip {
            if !names.insert(&c.name)
                || c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                p.push(format!(
                    "clip `{}`: names must be unique [A-Za-z0-9_-]+",
                    c.name
                ));
            }
            if !(0.2..=600.0).contains(&c.duration_s) {
                p.push(format!("clip `{}`: duration_s must be 0.2..=600", c.name));
            }
            if c.width < 16 || c.height < 16 || c.width > 3840 || c.height > 2160 {
                p.push(format!(
                    "clip `{}`: size must be 16..=3840 x 16..=2160",
                    c.name
                ));
            }
            if c.width % 2 != 0 || c.height % 2 != 0 {
                p.push(format!("clip `{}`: width and height must be even", c.name));
            }
            if c.weight == 0 {
                p.push(format!("clip `{}`: weight must be at least 1", c.name));
            }
        }
        p
    }

    /// Replicas of `stage`.
    pub fn replicas_of(&self, stage: &str) -> usize {
        self.replicas.get(stage).copied().unwrap_or(1)
    }

    /// The kind of the `i`-th submission: round-robin over the kinds, each repeated by weight.
    pub fn kind_of(&self, i: usize) -> &ClipKind {
        let total: usize = self.clip.iter().map(|c| c.weight as usize).sum();
        let mut slot = i % total.max(1);
        for c in &self.clip {
            if slot < c.weight as usize {
                return c;
            }
            slot -= c.weight as usize;
        }
        &self.clip[0]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Profile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = parse(
            r#"
            clips = 0
            rate = 0
            max_seconds = 10
            partitions = 2
            replicas = { media = 3, meda = 1 }
            env = { PATH = "x" }
            [[clip]]
            name = "a"
            duration_s = 1
            width = 33
            height = 20
            audio = "none"
            "#,
        );
        let problems = p.problems().join("\n");
        for expected in [
            "clips must be at least 1",
            "rate 0 must be > 0",
            "replicas.media = 3: must be 1..=2",
            "unknown stage `meda`",
            "`PATH` is not a CLIPGUARD_ variable",
            "width and height must be even",
        ] {
            assert!(problems.contains(expected), "{expected} not in {problems}");
        }
    }

    #[test]
    fn kinds_are_submitted_round_robin_by_weight() {
        let p = parse(
            r#"
            clips = 6
            rate = 1
            max_seconds = 10
            partitions = 1
            [[clip]]
            name = "a"
            duration_s = 1
            width = 32
            height = 32
            audio = "none"
            weight = 2
            [[clip]]
            name = "b"
            duration_s = 1
            width = 32
            height = 32
            audio = "tone"
            "#,
        );
        let names: Vec<&str> = (0..6).map(|i| p.kind_of(i).name.as_str()).collect();
        assert_eq!(names, ["a", "a", "b", "a", "a", "b"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<Profile, _> = toml::from_str(
            "clips = 1\nrate = 1\nmax_seconds = 1\npartitions = 1\nclip = []\nrat = 2\n",
        );
        assert!(r.unwrap_err().to_string().contains("unknown field `rat`"));
    }
}

//! The moderation policy, shared by what decides (the monitor, the prompt check) and by the
//! evaluation: the policy file format and its validation (every problem reported at once), the
//! pure per-audience decision over category scores, the one engine that applies it and
//! explains the result ([`Policy::apply`]: per category its decision in every audience column,
//! its table entry, reason and sentence), and the words verdicts use for evidence.
//!
//! This crate owns the `policy/` folder: `default.toml` (categories × audiences) and `text.toml`
//! (the text classifier's blocklists, exemplars and operating points) ship inside it.
//!
//! ```
//! use std::collections::BTreeMap;
//! use clipguard_policy::{Audience, Policy};
//! let policy = Policy::default_policy();
//! let scores = BTreeMap::from([("self_harm".to_string(), 0.99_f32)]);
//! assert_eq!(policy.verdict(&scores, Audience::PublicFeed).word(), "block");
//! ```

mod apply;
mod evidence;

use std::collections::BTreeMap;
use std::path::Path;

use clipguard_schemas::{
    AgeBand, AudienceContext, AudienceDecisions, Decision, Provenance, Surface,
};
use serde::Deserialize;

pub use apply::{Applied, CONTEXT_CATEGORIES, Row, Scored};
pub use clipguard_schemas::names::category::*;
pub use evidence::{evidence_phrase, shorten};

/// The policy clipguard ships (`policy/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../default.toml");

/// The text classifier's shipped policy (`policy/text.toml`): blocklists, exemplars, near-miss
/// gate and operating points, read by `clipguard-text`.
pub const DEFAULT_TEXT_POLICY: &str = include_str!("../text.toml");

/// Why a policy cannot be used. Always the user's to fix (the file or its path); a retry never
/// helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("policy {path}: {message}")]
    Unreadable { path: String, message: String },
    /// The policy is malformed or inconsistent; every problem found is listed.
    #[error("policy {origin}: {}", problems.join("; "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

/// A potential-minor score at or above this puts every audience on the under-18 rules.
pub const MINOR_SCORE: f32 = 0.5;

fn block() -> Action {
    Action::Block
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Review,
    Block,
}

impl Action {
    pub fn word(self) -> &'static str {
        self.decision().word()
    }

    pub fn decision(self) -> Decision {
        match self {
            Action::Allow => Decision::Allow,
            Action::Review => Decision::Review,
            Action::Block => Decision::Block,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub threshold: f32,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRules {
    #[serde(default)]
    pub description: String,
    pub adult: Rule,
    pub under_18: Rule,
    pub public_feed: Rule,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: String,
    /// A stage failed on the clip or did not answer by the deadline (never `allow`).
    pub on_missing: Action,
    /// The clip could not be decoded (never `allow`; default `block`).
    #[serde(default = "block")]
    pub on_undecodable: Action,
    pub categories: BTreeMap<String, CategoryRules>,
    /// Which clips must carry a valid C2PA manifest from an expected generator (`[provenance]`;
    /// absent: none).
    #[serde(default)]
    pub provenance: ProvenanceRule,
    /// The policy's text as written (for the reasoning backend's prompt and for replay output).
    #[serde(skip)]
    pub source: String,
}

/// `[provenance]`: clips leaving through `required_on` surfaces must carry a C2PA manifest that
/// validates and whose claim generator is one of `expected_generators`; a clip without one
/// scores [`PROVENANCE_UNVERIFIED`] 1.0. Empty `expected_generators`: nothing is required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceRule {
    /// Generator names, compared case-insensitively with the manifest's claim generator up to
    /// its first `/` (`acme-video` matches `acme-video/2.1`).
    pub expected_generators: Vec<String>,
    /// Surfaces whose clips need such a manifest: `private`, `feed`, `download`, `unspecified`.
    pub required_on: Vec<String>,
    /// The manifest's signer must chain to a trust anchor (`media.c2pa_trust_anchors`): a
    /// claim generator is whatever the signer wrote, so without this anyone can sign a clip
    /// as an expected generator. On by default.
    pub require_trusted: bool,
}

impl Default for ProvenanceRule {
    fn default() -> Self {
        Self {
            expected_generators: Vec::new(),
            required_on: Vec::new(),
            require_trusted: true,
        }
    }
}

/// The word a policy file uses for a surface.
pub fn surface_word(s: Surface) -> &'static str {
    match s {
        Surface::Unspecified => "unspecified",
        Surface::Private => "private",
        Surface::Feed => "feed",
        Surface::Download => "download",
    }
}

/// The surface a policy file's word names ([`surface_word`] read back).
pub fn surface_of(word: &str) -> Option<Surface> {
    [
        Surface::Unspecified,
        Surface::Private,
        Surface::Feed,
        Surface::Download,
    ]
    .into_iter()
    .find(|s| surface_word(*s) == word)
}

impl ProvenanceRule {
    /// Whether the generator named in a claim generator (`name/version ...`) is expected.
    pub fn expects(&self, claim_generator: &str) -> bool {
        let name = claim_generator.split('/').next().unwrap_or_default().trim();
        !name.is_empty()
            && self
                .expected_generators
                .iter()
                .any(|g| g.trim().eq_ignore_ascii_case(name))
    }

    /// Why a clip on `surface` with `provenance` (`None`: the media stage never said) does
    /// not meet the rule, or `None` when it does or the rule does not apply to it.
    pub fn unmet(&self, surface: Surface, provenance: Option<&Provenance>) -> Option<String> {
        if self.expected_generators.is_empty()
            || !self.required_on.iter().any(|w| w == surface_word(surface))
        {
            return None;
        }
        let expected = self.expected_generators.join(", ");
        let found = match provenance {
            None => "no provenance was read".to_string(),
            Some(p)
                if p.state == "present"
                    && self.expects(&p.claim_generator)
                    && (p.trusted || !self.require_trusted) =>
            {
                return None;
            }
            Some(p) if p.state == "present" && self.expects(&p.claim_generator) => format!(
                "a valid manifest from `{}` whose signer ({}) chains to no trust anchor \
                 (media.c2pa_trust_anchors)",
                p.claim_generator, p.signer
            ),
            Some(p) if p.state == "present" => {
                format!("a valid manifest from `{}`", p.claim_generator)
            }
            Some(p) if p.state == "invalid" => format!(
                "a manifest from `{}` that fails validation",
                p.claim_generator
            ),
            Some(_) => "no manifest".to_string(),
        };
        Some(format!(
            "a clip for the {} surface needs a valid C2PA manifest from {expected}; it has {found}",
            surface_word(surface)
        ))
    }

    fn problems(&self, categories: &BTreeMap<String, CategoryRules>, out: &mut Vec<String>) {
        for w in &self.required_on {
            if surface_of(w).is_none() {
                out.push(format!(
                    "provenance.required_on: `{w}` is not a surface (private, feed, download, unspecified)"
                ));
            }
        }
        for g in &self.expected_generators {
            if g.trim().is_empty() || g.contains('/') {
                out.push(format!(
                    "provenance.expected_generators: `{g}` is not a generator name (compared up to the claim generator's first `/`)"
                ));
            }
        }
        if !self.expected_generators.is_empty() && self.required_on.is_empty() {
            out.push(
                "provenance.required_on: empty, so the expected generators are never required"
                    .to_string(),
            );
        }
        if !self.expected_generators.is_empty()
            && !self.required_on.is_empty()
            && !categories.contains_key(PROVENANCE_UNVERIFIED)
        {
            out.push(format!(
                "categories.{PROVENANCE_UNVERIFIED}: missing; [provenance] requires manifests"
            ));
        }
    }
}

/// Who will see the clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Adult,
    Under18,
    PublicFeed,
}

impl Audience {
    pub const ALL: [Audience; 3] = [Audience::Adult, Audience::Under18, Audience::PublicFeed];

    /// Position in [`Audience::ALL`] (per-audience arrays use this order).
    pub fn index(self) -> usize {
        match self {
            Audience::Adult => 0,
            Audience::Under18 => 1,
            Audience::PublicFeed => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Audience::Adult => "adult",
            Audience::Under18 => "under_18",
            Audience::PublicFeed => "public_feed",
        }
    }

    /// `adult`, `under_18`, `public_feed` (also `under-18`, `feed`).
    pub fn parse(word: &str) -> Option<Audience> {
        Some(match word {
            "adult" => Audience::Adult,
            "under_18" | "under-18" | "minor" => Audience::Under18,
            "public_feed" | "public-feed" | "feed" => Audience::PublicFeed,
            _ => return None,
        })
    }

    /// The audience a clip's context puts it in: a viewer under 18 → `under_18`; a private
    /// surface (or a download) for an adult → `adult`; a feed, or nothing said → `public_feed`
    /// (anyone may see it).
    pub fn of_context(ctx: Option<&AudienceContext>) -> Audience {
        let Some(ctx) = ctx else {
            return Audience::PublicFeed;
        };
        if ctx.age_band() == AgeBand::Under18 {
            return Audience::Under18;
        }
        match (ctx.age_band(), ctx.surface()) {
            (AgeBand::Adult, Surface::Private | Surface::Download) => Audience::Adult,
            _ => Audience::PublicFeed,
        }
    }

    /// The context that puts a clip in this audience, the inverse of [`Audience::of_context`]:
    /// an adult on a private surface, a viewer under 18, a feed.
    pub fn context(self) -> (AgeBand, Surface) {
        match self {
            Audience::Adult => (AgeBand::Adult, Surface::Private),
            Audience::Under18 => (AgeBand::Under18, Surface::Unspecified),
            Audience::PublicFeed => (AgeBand::Unspecified, Surface::Feed),
        }
    }

    /// The audience a request names (`AUDIENCE_UNSPECIFIED` is the public feed: anyone may
    /// see it).
    pub fn of_request(a: clipguard_schemas::Audience) -> Audience {
        match a {
            clipguard_schemas::Audience::Adult => Audience::Adult,
            clipguard_schemas::Audience::Under18 => Audience::Under18,
            clipguard_schemas::Audience::PublicFeed | clipguard_schemas::Audience::Unspecified => {
                Audience::PublicFeed
            }
        }
    }

    /// The decision of this audience's column.
    pub fn of(self, d: &AudienceDecisions) -> i32 {
        match self {
            Audience::Adult => d.adult,
            Audience::Under18 => d.under_18,
            Audience::PublicFeed => d.public_feed,
        }
    }

    pub fn set(self, d: &mut AudienceDecisions, decision: Decision) {
        let slot = match self {
            Audience::Adult => &mut d.adult,
            Audience::Under18 => &mut d.under_18,
            Audience::PublicFeed => &mut d.public_feed,
        };
        *slot = decision as i32;
    }
}

impl Policy {
    /// Parses and checks a policy; every problem is reported at once, each naming its place.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Invalid {
            origin: origin.to_string(),
            problems: vec![e.to_string()],
        })?;
        let mut problems = Vec::new();
        if p.version.trim().is_empty() {
            problems.push("version: empty".to_string());
        }
        if p.on_missing == Action::Allow {
            problems.push(
                "on_missing: `allow` would let unchecked clips through; use review or block"
                    .to_string(),
            );
        }
        if p.on_undecodable == Action::Allow {
            problems.push(
                "on_undecodable: `allow` would let undecodable clips through; use review or block"
                    .to_string(),
            );
        }
        if p.categories.is_empty() {
            problems.push("categories: none".to_string());
        }
        for (name, c) in &p.categories {
            for (audience, r) in [
                ("adult", c.adult),
                ("under_18", c.under_18),
                ("public_feed", c.public_feed),
            ] {
                if !(0.0..=1.0).contains(&r.threshold) {
                    problems.push(format!(
                        "categories.{name}.{audience}.threshold: {} is outside 0..=1",
                        r.threshold
                    ));
                }
            }
            for (audience, r) in [("under_18", c.under_18), ("public_feed", c.public_feed)] {
                if r.threshold > c.adult.threshold || r.action < c.adult.action {
                    problems.push(format!(
                        "categories.{name}.{audience}: must be at least as strict as adult \
                         (threshold ≤ {}, action ≥ {:?})",
                        c.adult.threshold, c.adult.action
                    ));
                }
            }
            if name == MINORS_SEXUAL
                && [c.adult, c.under_18, c.public_feed]
                    .iter()
                    .any(|r| r.action != Action::Block)
            {
                problems.push(format!("categories.{name}: must block in every audience"));
            }
        }
        p.provenance.problems(&p.categories, &mut problems);
        if !p.categories.contains_key(MINORS_SEXUAL) {
            problems.push(format!(
                "categories.{MINORS_SEXUAL}: missing; it is a hard block"
            ));
        }
        if problems.is_empty() {
            Ok(Policy {
                source: text.to_string(),
                ..p
            })
        } else {
            Err(PolicyError::Invalid {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn default_policy() -> Policy {
        #[allow(clippy::expect_used)]
        Self::parse(DEFAULT_POLICY, "(shipped policy/default.toml)")
            .expect("the shipped policy is valid (checked by its test)")
    }

    /// A category's rule for `audience` (`None`: the policy has no such category).
    pub fn rule(&self, category: &str, audience: Audience) -> Option<Rule> {
        let c = self.categories.get(category)?;
        Some(match audience {
            Audience::Adult => c.adult,
            Audience::Under18 => c.under_18,
            Audience::PublicFeed => c.public_feed,
        })
    }

    /// The decision for `audience` on plain scores (one per category): the strictest of
    /// [`Policy::apply`]'s rows in that column.
    pub fn verdict(&self, scores: &BTreeMap<String, f32>, audience: Audience) -> Decision {
        self.apply(scores.iter().map(|(category, score)| Scored {
            category,
            score: *score,
            evidence: &[],
            sources: &[],
        }))
        .columns()[audience.index()]
    }
}

/// Which policy decides (`[policy]` in the configuration): the monitor's verdicts and the
/// prompt check read the same one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// The policy file (TOML); unset = the shipped `policy/default.toml`. It owns the
    /// thresholds and actions, the fail-closed actions and the version every verdict records.
    pub file: Option<std::path::PathBuf>,
    /// A second policy decided beside the active one on the same findings; its verdicts go to
    /// `clips.verdicts.shadow` and disagreements are counted. Unset = none.
    pub shadow: Option<std::path::PathBuf>,
}

impl PolicyConfig {
    /// The active policy: the configured file, else the shipped one.
    pub fn load(&self) -> Result<Policy, PolicyError> {
        match &self.file {
            Some(path) => Policy::load(path),
            None => Ok(Policy::default_policy()),
        }
    }

    /// The shadow policy, when one is configured.
    pub fn load_shadow(&self) -> Result<Option<Policy>, PolicyError> {
        self.shadow.as_deref().map(Policy::load).transpose()
    }

    /// Every file that does not load, by key.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (key, path) in [("file", &self.file), ("shadow", &self.shadow)] {
            if let Some(path) = path
                && let Err(e) = Policy::load(path)
            {
                problems.push(format!("policy.{key}: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(list: &[(&str, f32)]) -> BTreeMap<String, f32> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn an_audiences_context_puts_a_clip_back_in_that_audience() {
        for a in Audience::ALL {
            let (age_band, surface) = a.context();
            let ctx = AudienceContext {
                age_band: age_band as i32,
                surface: surface as i32,
                ..Default::default()
            };
            assert_eq!(Audience::of_context(Some(&ctx)), a);
            assert_eq!(Audience::parse(a.name()), Some(a));
        }
        use clipguard_schemas::Audience as Requested;
        assert_eq!(
            Audience::of_request(Requested::Unspecified),
            Audience::PublicFeed
        );
        assert_eq!(Audience::of_request(Requested::Under18), Audience::Under18);
        assert_eq!(Audience::of_request(Requested::Adult), Audience::Adult);
        assert_eq!(
            Audience::of_request(Requested::PublicFeed),
            Audience::PublicFeed
        );
    }

    /// The `[provenance]` rule: only on its surfaces, only a valid manifest from an expected
    /// generator under a trusted signer passes, and the rule's own mistakes are refused.
    #[test]
    fn a_required_manifest_must_be_valid_trusted_and_from_an_expected_generator() {
        let rule = ProvenanceRule {
            expected_generators: vec!["acme-video".into()],
            required_on: vec!["download".into()],
            require_trusted: true,
        };
        let p = |state: &str, generator: &str, trusted: bool| Provenance {
            state: state.into(),
            claim_generator: generator.into(),
            trusted,
            signer: "Acme CA".into(),
            ..Default::default()
        };
        assert_eq!(
            rule.unmet(
                Surface::Download,
                Some(&p("present", "ACME-Video/2.1", true))
            ),
            None
        );
        assert_eq!(
            rule.unmet(Surface::Feed, None),
            None,
            "not required on the feed"
        );
        for (got, says) in [
            (None, "no provenance"),
            (Some(p("absent", "", false)), "no manifest"),
            (
                Some(p("present", "acme-video/2.1", false)),
                "no trust anchor",
            ),
            (Some(p("present", "other/1", true)), "from `other/1`"),
            (
                Some(p("invalid", "acme-video/2.1", true)),
                "fails validation",
            ),
            (
                Some(p("present", "acme-video-fake/1", true)),
                "from `acme-video-fake/1`",
            ),
        ] {
            let why = rule
                .unmet(Surface::Download, got.as_ref())
                .unwrap_or_default();
            assert!(why.contains(says), "{got:?}: {why}");
        }
        let lax = ProvenanceRule {
            require_trusted: false,
            ..rule.clone()
        };
        assert_eq!(
            lax.unmet(
                Surface::Download,
                Some(&p("present", "acme-video/2", false))
            ),
            None
        );
        assert_eq!(
            ProvenanceRule::default().unmet(Surface::Download, None),
            None
        );

        let text = DEFAULT_POLICY.replace(
            "expected_generators = []\nrequired_on = [\"download\", \"feed\"]",
            "expected_generators = [\"acme/2\", \"\"]\nrequired_on = [\"cinema\"]",
        );
        assert_ne!(text, DEFAULT_POLICY);
        let Err(PolicyError::Invalid { problems, .. }) = Policy::parse(&text, "t") else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`cinema` is not a surface")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("`acme/2`")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_shipped_policy_is_valid() {
        let p = Policy::default_policy();
        assert!(p.categories.len() >= 7);
    }

    /// Category × audience × minor: the shipped policy's table.
    #[test]
    fn decisions_by_category_audience_and_potential_minor() {
        use Audience::*;
        use Decision::*;
        let p = Policy::default_policy();
        #[rustfmt::skip]
        let table: &[(&str, f32, bool, Audience, Decision)] = &[
            // category, score, potential minor, audience, expected
            ("sexual", 0.9, false, Adult, Allow),
            ("sexual", 0.9, false, PublicFeed, Block),
            ("sexual", 0.9, false, Under18, Block),
            ("sexual", 0.6, false, Adult, Allow),
            ("sexual", 0.6, true, Adult, Block),      // a minor in the clip: under-18 rules
            ("sexual", 0.4, false, PublicFeed, Allow),
            ("sexual_likeness", 0.6, false, Adult, Block),
            ("self_harm", 0.6, false, Adult, Review),
            ("self_harm", 0.45, false, Adult, Allow),
            ("self_harm", 0.45, false, Under18, Block),
            ("self_harm", 0.45, true, PublicFeed, Block),
            ("violence_gore", 0.6, false, Adult, Allow),
            ("violence_gore", 0.75, false, Adult, Review),
            ("violence_gore", 0.6, false, PublicFeed, Block),
            ("political_persuasion", 0.6, false, Adult, Review),
            ("political_persuasion", 0.6, false, PublicFeed, Block),
            ("extremism_hate", 0.6, false, Adult, Block),
            ("minors_sexual", 0.45, false, Adult, Block),
            ("minors_sexual", 0.3, false, Adult, Allow),
        ];
        for &(category, score, minor, audience, want) in table {
            let mut s = scores(&[(category, score)]);
            if minor {
                s.insert(POTENTIAL_MINOR.into(), 0.8);
            }
            let got = p.verdict(&s, audience);
            assert_eq!(
                got,
                want,
                "{category} {score} minor={minor} {}",
                audience.name()
            );
        }
        // Nothing found: allow everywhere.
        for a in Audience::ALL {
            assert_eq!(p.verdict(&BTreeMap::new(), a), Decision::Allow);
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_by_place() {
        let text = r#"
version = "x"
on_missing = "allow"
[categories.sexual]
adult = { threshold = 0.5, action = "block" }
under_18 = { threshold = 0.7, action = "block" }
public_feed = { threshold = 1.5, action = "review" }
[categories.minors_sexual]
adult = { threshold = 0.4, action = "review" }
under_18 = { threshold = 0.4, action = "block" }
public_feed = { threshold = 0.4, action = "block" }
"#;
        let e = Policy::parse(text, "t").unwrap_err().to_string();
        for want in [
            "on_missing",
            "categories.sexual.public_feed.threshold: 1.5",
            "categories.sexual.under_18: must be at least as strict as adult",
            "categories.sexual.public_feed: must be at least as strict as adult",
            "categories.minors_sexual: must block in every audience",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        let e = Policy::parse(
            "version = \"x\"\non_missing = \"review\"\nsurprise = 1\n[categories]\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("surprise"), "{e}");
    }
}

//! The policy applied to category scores, and its explanation: one engine for the monitor's
//! verdicts and the prompt check. Each category becomes a [`Row`] with its decision in every
//! audience column; the table entry, the machine-readable reason and the sentence that explains
//! it are the row's, so a prompt and a clip with the same scores read the same.

use std::collections::BTreeMap;

use clipguard_schemas::{AudienceDecisions, CategoryDecision, Decision, Evidence};

use crate::{Audience, MINOR_SCORE, POTENTIAL_MINOR, Policy, evidence_phrase};

/// Categories that describe the clip rather than a violation (`potential_minor`: a face that
/// may be under 18). Reported with their evidence; they pick stricter rules (every audience on
/// the under-18 ones) and never block or review a clip by themselves.
pub const CONTEXT_CATEGORIES: &[&str] = &[POTENTIAL_MINOR];

/// The threshold a category the policy does not name is held to.
const UNKNOWN_THRESHOLD: f32 = 0.5;

/// How many drivers a rationale names; the rest are counted.
const NAMED_DRIVERS: usize = 4;

/// One category's score and what supports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored<'a> {
    pub category: &'a str,
    pub score: f32,
    pub evidence: &'a [Evidence],
    /// What reported it (stages; empty for a prompt).
    pub sources: &'a [String],
}

/// One category under the policy, in every audience column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The category's score and what supports it, as given.
    pub scored: Scored<'a>,
    /// A context category ([`CONTEXT_CATEGORIES`]): it decides nothing.
    pub context: bool,
    /// The policy does not name the category: it is held to its `on_missing` action.
    pub unknown: bool,
    /// Decision and threshold per audience (`Audience::ALL` order).
    pub columns: [(Decision, f32); 3],
}

impl Row<'_> {
    /// The decision for `audience`.
    pub fn decision(&self, audience: Audience) -> Decision {
        self.columns[audience.index()].0
    }

    /// The strictest decision over the audiences and its threshold; `own` first, so a tie
    /// reports its threshold.
    pub fn strictest(&self, own: Audience) -> (Decision, f32) {
        std::iter::once(own)
            .chain(Audience::ALL.into_iter().filter(|a| *a != own))
            .map(|a| self.columns[a.index()])
            .fold(None::<(Decision, f32)>, |best, c| match best {
                Some(b) if c.0 <= b.0 => Some(b),
                _ => Some(c),
            })
            .unwrap_or((Decision::Allow, UNKNOWN_THRESHOLD))
    }

    /// The decision per audience.
    pub fn audiences(&self) -> AudienceDecisions {
        let mut per = AudienceDecisions::default();
        for a in Audience::ALL {
            a.set(&mut per, self.decision(a));
        }
        per
    }

    /// The row as a table entry that reports `decision` at `threshold` (the strictest for a
    /// verdict, the asked audience's for a prompt).
    pub fn entry(&self, (decision, threshold): (Decision, f32)) -> CategoryDecision {
        CategoryDecision {
            category: self.scored.category.to_string(),
            score: self.scored.score,
            threshold,
            decision: decision as i32,
            evidence: self.scored.evidence.to_vec(),
            audiences: Some(self.audiences()),
        }
    }

    /// The machine-readable reason the row gives a verdict: `category:NAME` when it decides
    /// something, `unknown_category:NAME` for one the policy lacks, `context:NAME` for
    /// context that applies.
    pub fn reason(&self) -> Option<String> {
        if self.context {
            let category = self.scored.category;
            return (self.scored.score >= MINOR_SCORE).then(|| format!("context:{category}"));
        }
        if self.columns.iter().all(|c| c.0 == Decision::Allow) {
            return None;
        }
        Some(if self.unknown {
            format!("unknown_category:{}", self.scored.category)
        } else {
            format!("category:{}", self.scored.category)
        })
    }

    /// "self_harm 0.83 (block for under_18 ≥ 0.60, public_feed ≥ 0.60; allow for adult):
    /// transcript 3.2–5.1 s «…»"
    pub fn sentence(&self) -> String {
        let columns = if self.unknown {
            match self.columns[0].0 {
                Decision::Review => "not in the policy; held for review".to_string(),
                d => format!("not in the policy; {} (on_missing)", d.word()),
            }
        } else {
            let mut by_decision: BTreeMap<std::cmp::Reverse<Decision>, Vec<String>> =
                BTreeMap::new();
            for a in Audience::ALL {
                let (d, threshold) = self.columns[a.index()];
                let name = if d == Decision::Allow {
                    a.name().to_string()
                } else {
                    format!("{} ≥ {threshold:.2}", a.name())
                };
                by_decision
                    .entry(std::cmp::Reverse(d))
                    .or_default()
                    .push(name);
            }
            by_decision
                .iter()
                .map(|(d, names)| format!("{} for {}", d.0.word(), names.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let evidence = match (self.scored.evidence.first(), self.scored.sources.is_empty()) {
            (Some(e), _) => format!(": {}", evidence_phrase(e)),
            (None, false) => format!(" (from {})", self.scored.sources.join(", ")),
            (None, true) => String::new(),
        };
        let Scored {
            category, score, ..
        } = self.scored;
        format!("{category} {score:.2} ({columns}){evidence}")
    }
}

/// The policy applied to a set of scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<'a> {
    /// One per scored category, in the order given.
    pub rows: Vec<Row<'a>>,
    /// A potential minor put every audience on the under-18 rules.
    pub minor: bool,
}

impl Applied<'_> {
    /// The strictest decision per audience column (`Audience::ALL` order).
    pub fn columns(&self) -> [Decision; 3] {
        Audience::ALL.map(|a| {
            self.rows
                .iter()
                .map(|r| r.decision(a))
                .max()
                .unwrap_or(Decision::Allow)
        })
    }

    /// The sentences of the rows that decide something for any of `audiences`, strongest
    /// first (decision, then score): at most four, then how many more there are.
    pub fn drivers(&self, audiences: &[Audience]) -> Vec<String> {
        let mut drivers: Vec<(Decision, f32, &Row<'_>)> = self
            .rows
            .iter()
            .filter(|r| !r.context)
            .filter_map(|r| {
                let d = audiences.iter().map(|a| r.decision(*a)).max()?;
                (d != Decision::Allow).then_some((d, r.scored.score, r))
            })
            .collect();
        drivers.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
        let more = drivers.len().saturating_sub(NAMED_DRIVERS);
        let mut out: Vec<String> = drivers
            .into_iter()
            .take(NAMED_DRIVERS)
            .map(|(_, _, r)| r.sentence())
            .collect();
        if more > 0 {
            out.push(format!("{more} more categories in `categories`"));
        }
        out
    }
}

impl Policy {
    /// Applies the policy to `scores` (at most one per category): each category's decision in
    /// every audience column. A `potential_minor` score at or above [`MINOR_SCORE`] puts every
    /// audience on the `under_18` rules; a category the policy does not name is held to
    /// `on_missing` once it reaches 0.5.
    pub fn apply<'a>(&self, scores: impl IntoIterator<Item = Scored<'a>>) -> Applied<'a> {
        let scores: Vec<Scored<'a>> = scores.into_iter().collect();
        let minor = scores
            .iter()
            .any(|s| s.category == POTENTIAL_MINOR && s.score >= MINOR_SCORE);
        let rows = scores
            .into_iter()
            .map(|s| {
                let context = CONTEXT_CATEGORIES.contains(&s.category);
                let unknown = !context && !self.categories.contains_key(s.category);
                let columns = Audience::ALL.map(|a| {
                    if context {
                        return (Decision::Allow, MINOR_SCORE);
                    }
                    let column = if minor { Audience::Under18 } else { a };
                    match self.rule(s.category, column) {
                        Some(rule) if s.score >= rule.threshold => {
                            (rule.action.decision(), rule.threshold)
                        }
                        Some(rule) => (Decision::Allow, rule.threshold),
                        None if s.score >= UNKNOWN_THRESHOLD => {
                            (self.on_missing.decision(), UNKNOWN_THRESHOLD)
                        }
                        None => (Decision::Allow, UNKNOWN_THRESHOLD),
                    }
                });
                Row {
                    scored: s,
                    context,
                    unknown,
                    columns,
                }
            })
            .collect();
        Applied { rows, minor }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clipguard_schemas::Decision::{Allow, Block, Review};

    use super::*;

    fn scored<'a>(category: &'a str, score: f32, evidence: &'a [Evidence]) -> Scored<'a> {
        Scored {
            category,
            score,
            evidence,
            sources: &[],
        }
    }

    fn policy() -> Policy {
        Policy::parse(
            r#"
version = "t"
on_missing = "review"
[categories.self_harm]
adult = { threshold = 0.8, action = "review" }
under_18 = { threshold = 0.5, action = "block" }
public_feed = { threshold = 0.6, action = "block" }
[categories.minors_sexual]
adult = { threshold = 0.5, action = "block" }
under_18 = { threshold = 0.5, action = "block" }
public_feed = { threshold = 0.5, action = "block" }
"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn each_audience_column_is_its_rule_and_the_row_explains_them() {
        let evidence = [Evidence {
            kind: "prompt".into(),
            detail: "how to hurt myself".into(),
            ..Default::default()
        }];
        let a = policy().apply([scored("self_harm", 0.7, &evidence)]);
        let row = &a.rows[0];
        assert_eq!(
            row.columns,
            [(Allow, 0.8), (Block, 0.5), (Block, 0.6)],
            "{row:?}"
        );
        assert_eq!(a.columns(), [Allow, Block, Block]);
        // The strictest column, the asked audience's threshold on a tie.
        assert_eq!(row.strictest(Audience::PublicFeed), (Block, 0.6));
        assert_eq!(row.strictest(Audience::Adult), (Block, 0.5));
        assert_eq!(row.reason().as_deref(), Some("category:self_harm"));
        let sentence = row.sentence();
        assert!(
            sentence.starts_with(
                "self_harm 0.70 (block for under_18 ≥ 0.50, public_feed ≥ 0.60; allow for adult): "
            ),
            "{sentence}"
        );
        assert!(sentence.contains("how to hurt myself"), "{sentence}");
        // An adult-only reading names no driver; every audience names it once.
        assert!(a.drivers(&[Audience::Adult]).is_empty());
        assert_eq!(a.drivers(&Audience::ALL), vec![sentence]);
    }

    #[test]
    fn a_potential_minor_puts_every_audience_on_the_under_18_rules_and_decides_nothing() {
        let a = policy().apply([
            scored("self_harm", 0.55, &[]),
            scored(POTENTIAL_MINOR, 0.9, &[]),
        ]);
        assert!(a.minor);
        assert_eq!(a.columns(), [Block, Block, Block]);
        let context = &a.rows[1];
        assert!(context.context);
        assert_eq!(context.columns, [(Allow, MINOR_SCORE); 3]);
        assert_eq!(context.reason().as_deref(), Some("context:potential_minor"));
        assert_eq!(a.drivers(&Audience::ALL).len(), 1);
    }

    #[test]
    fn a_category_the_policy_lacks_is_held_to_on_missing() {
        let a = policy().apply([scored("novel", 0.6, &[]), scored("quiet", 0.3, &[])]);
        assert!(a.rows[0].unknown);
        assert_eq!(a.rows[0].columns, [(Review, 0.5); 3]);
        assert_eq!(
            a.rows[0].reason().as_deref(),
            Some("unknown_category:novel")
        );
        assert!(
            a.rows[0]
                .sentence()
                .contains("not in the policy; held for review")
        );
        assert_eq!(a.rows[1].reason(), None);
        assert_eq!(a.columns(), [Review; 3]);
    }

    #[test]
    fn a_rationale_names_four_drivers_strongest_first_and_counts_the_rest() {
        let p = Policy::default_policy();
        let names: Vec<&str> = p.categories.keys().map(String::as_str).take(6).collect();
        let a = p.apply(names.iter().map(|n| scored(n, 0.999, &[])));
        let drivers = a.drivers(&Audience::ALL);
        assert_eq!(drivers.len(), 5, "{drivers:?}");
        assert_eq!(drivers[4], "2 more categories in `categories`");
    }
}

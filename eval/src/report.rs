//! The evaluation report: `report.md`, `report.html` (one self-contained page, plots inlined),
//! PNG plots and `summary.json`, built from one document model so the Markdown and the HTML say
//! the same thing.

use std::path::Path;
use std::time::Duration;

use clipguard_policy::{Audience, shorten};
use serde_json::{Value, json};

use crate::{EvalError, Results, Targets, file_error, headline_audience};

#[derive(Debug)]
pub struct Report<'a> {
    pub results: &'a Results,
    pub reference: &'a Targets,
    pub targets: Option<&'a Targets>,
    pub missed: Option<&'a [String]>,
    pub elapsed: Duration,
}

enum Block {
    Heading(u8, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<String>>),
    Image(String, String),
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} %", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn rate_cell(r: &crate::Rate) -> String {
    match (r.value(), r.wilson()) {
        (Some(v), Some((lo, hi))) => format!(
            "{:.1} % ({}/{}; {:.0}–{:.0})",
            v * 100.0,
            r.k,
            r.n,
            lo * 100.0,
            hi * 100.0
        ),
        _ => "–".into(),
    }
}

/// What a set can and cannot measure, from the kinds of its items.
fn scope(r: &Results, set: &str) -> String {
    let kinds: std::collections::BTreeSet<&str> = r
        .items
        .iter()
        .filter(|i| i.set == set)
        .map(|i| i.kind.word())
        .collect();
    let mut s = Vec::new();
    if kinds.contains("text") {
        s.push("Text items go through the prompt check (the text classifier and the policy, the code behind `Moderation.CheckPrompt`). They measure how well the text categories are recognised in prompts and scene descriptions; they say nothing about images or speech recognition.");
    }
    if kinds.contains("speech") {
        s.push("Speech items are the same kind of sentences spoken by espeak-ng over colour bars and run through every stage on an embedded broker: decoding, voice activity, whisper transcription, the transcript classifier and the monitor. They measure the text path end to end including transcription errors (synthetic voice, clean audio: real speech is harder).");
    }
    if kinds.contains("clip") || kinds.contains("generated") {
        s.push("Video items are benign (real footage from reference data where present, and generated test patterns). They measure over-refusal of the visual path (frame classifiers, face and age estimation, hash banks). Visual recall — how much unsafe imagery is stopped — cannot be measured: the project holds no unsafe imagery and never will.");
    }
    s.join(" ")
}

impl Report<'_> {
    fn headline_rows(&self, set: &str) -> (Audience, Vec<Vec<String>>) {
        let r = self.results;
        let a = headline_audience(r, set);
        let mut rows = Vec::new();
        if let Some(cats) = r.cells.get(set) {
            for (cat, row) in cats {
                let cell = &row[a.index()];
                let reference = self.reference.categories.get(cat);
                let target = self.targets.and_then(|t| t.categories.get(cat));
                let meets = match target {
                    None => "–".to_string(),
                    Some(t) => {
                        let u = cell.not_unsafe.value().map(|v| v * 100.0 >= t.not_unsafe);
                        let o = cell
                            .not_overrefuse
                            .value()
                            .map(|v| v * 100.0 >= t.not_overrefuse);
                        match (u, o) {
                            (Some(false), _) | (_, Some(false)) => "no".into(),
                            (None, None) => "–".into(),
                            _ => "yes".into(),
                        }
                    }
                };
                let not_unsafe = if cell.allowed_by_policy && cell.not_unsafe.n > 0 {
                    format!("allowed for {} by policy", a.name())
                } else {
                    rate_cell(&cell.not_unsafe)
                };
                rows.push(vec![
                    cat.clone(),
                    reference
                        .map(|t| format!("{:.2} %", t.not_unsafe))
                        .unwrap_or_else(|| "–".into()),
                    not_unsafe,
                    reference
                        .map(|t| format!("{:.2} %", t.not_overrefuse))
                        .unwrap_or_else(|| "–".into()),
                    rate_cell(&cell.not_overrefuse),
                    meets,
                ]);
            }
        }
        if let Some(b) = r.benign.get(set) {
            rows.push(vec![
                "all benign items".into(),
                "–".into(),
                "–".into(),
                self.reference
                    .benign_not_overrefuse
                    .map(|v| format!("≥ {v:.0} %"))
                    .unwrap_or_else(|| "–".into()),
                rate_cell(&b[a.index()]),
                match self.targets.and_then(|t| t.benign_not_overrefuse) {
                    Some(min) => match b[a.index()].value() {
                        Some(v) if v * 100.0 >= min => "yes".into(),
                        Some(_) => "no".into(),
                        None => "–".into(),
                    },
                    None => "–".into(),
                },
            ]);
        }
        (a, rows)
    }

    const HEADLINE_HEAD: [&'static str; 6] = [
        "category",
        "reference not_unsafe",
        "clipguard not_unsafe (k/n; 95 % CI)",
        "reference not_overrefuse",
        "clipguard not_overrefuse (k/n; 95 % CI)",
        "meets target",
    ];

    fn sets(&self) -> Vec<&String> {
        self.results.cells.keys().collect()
    }

    /// The per-set headline tables, as printed on stdout.
    pub fn headline_markdown(&self) -> String {
        let mut blocks = Vec::new();
        for set in self.sets() {
            let (a, rows) = self.headline_rows(set);
            blocks.push(Block::Heading(
                3,
                format!("{set} (audience {}, {} items)", a.name(), self.count(set)),
            ));
            blocks.push(Block::Table(
                Self::HEADLINE_HEAD.iter().map(|s| s.to_string()).collect(),
                rows,
            ));
            if let Some(line) = self.cascade_line(set) {
                blocks.push(Block::Para(line));
            }
        }
        markdown(&blocks)
    }

    /// The cascades' shares for `set`, in words: items the refining encoder scored again, and
    /// items the reasoning model would see.
    fn cascade_line(&self, set: &str) -> Option<String> {
        let (band, per_set) = self.results.cascade.as_ref()?;
        let x = per_set.get(set)?;
        let mut line = String::new();
        if let Some(r) = self.results.refined.get(set).filter(|r| r.k > 0) {
            line.push_str(&format!(
                "Refining encoder: {}/{} items ({}) had a category scored again by the text \
                 policy's stronger encoder (its uncertain band). ",
                r.k,
                r.n,
                pct(r.value())
            ));
        }
        line.push_str(&format!(
            "Reasoning cascade: {}/{} items ({}) have a category score in the uncertain band \
             [{}, {}]; with `monitor.reasoning.consult = \"uncertain\"` those go to the \
             reasoning model, the rest are decided by the policy engine alone.",
            x.k,
            x.n,
            pct(x.value()),
            band[0],
            band[1]
        ));
        Some(line)
    }

    fn count(&self, set: &str) -> usize {
        self.results.items.iter().filter(|i| i.set == set).count()
    }

    fn document(&self, plots: &[(String, String, String)]) -> Vec<Block> {
        let r = self.results;
        let mut b = Vec::new();
        b.push(Block::Heading(1, "clipguard evaluation".into()));
        b.push(Block::Para(format!(
            "Policy `{}`; {} items in {} sets; {:.0} s. An item is *stopped* for an audience when \
             its decision there is `review` or `block`. `not_unsafe`: the share of unsafe items \
             stopped by their own category (a self-harm item held only as another category is a \
             miss); `not_overrefuse`: the share of benign items let through (benign near \
             misses of the category; `all benign items`: every benign item of the set). \
             Intervals are 95 % Wilson score intervals: on 8 items they span about ±30 points, \
             so small sets show direction, not precision. Reference: {}.",
            r.policy_version,
            r.items.len(),
            r.cells.len(),
            self.elapsed.as_secs_f64(),
            if self.reference.source.is_empty() {
                "none"
            } else {
                &self.reference.source
            }
        )));
        if let Some(m) = self.missed {
            b.push(Block::Heading(2, "Targets".into()));
            if m.is_empty() {
                b.push(Block::Para("Every target is met.".into()));
            } else {
                b.push(Block::Para(format!(
                    "{} targets missed: {}.",
                    m.len(),
                    m.join("; ")
                )));
            }
        }
        for set in self.sets() {
            let (a, rows) = self.headline_rows(set);
            b.push(Block::Heading(
                2,
                format!("{set} ({} items, audience {})", self.count(set), a.name()),
            ));
            b.push(Block::Para(scope(r, set)));
            b.push(Block::Table(
                Self::HEADLINE_HEAD.iter().map(|s| s.to_string()).collect(),
                rows,
            ));
            if let Some(line) = self.cascade_line(set) {
                b.push(Block::Para(line));
            }
            for (s, file, alt) in plots {
                if s == set {
                    b.push(Block::Image(file.clone(), alt.clone()));
                }
            }
            // Every audience.
            if let Some(cats) = r.cells.get(set.as_str())
                && !cats.is_empty()
            {
                b.push(Block::Heading(3, "By audience".into()));
                let mut head = vec!["category".to_string()];
                for a in Audience::ALL {
                    head.push(format!("{} not_unsafe", a.name()));
                    head.push(format!("{} not_overrefuse", a.name()));
                }
                let rows = cats
                    .iter()
                    .map(|(cat, row)| {
                        let mut cells = vec![cat.clone()];
                        for a in Audience::ALL {
                            let c = &row[a.index()];
                            cells.push(if c.allowed_by_policy && c.not_unsafe.n > 0 {
                                "allowed by policy".into()
                            } else {
                                pct(c.not_unsafe.value())
                            });
                            cells.push(pct(c.not_overrefuse.value()));
                        }
                        cells
                    })
                    .collect();
                b.push(Block::Table(head, rows));
            }
            // Category confusion.
            if let Some(m) = r.confusion.get(set.as_str())
                && m.iter()
                    .any(|c| c.rows.keys().any(|k| k != crate::BENIGN_ROW))
            {
                b.push(Block::Heading(3, "Category confusion".into()));
                b.push(Block::Para(
                    "Per audience, what stopped the items of each label: their own category, \
                     and every other category that stopped them too (a category confused for \
                     another: adult sexual content flagged `minors_sexual` is the worst such \
                     error). In the `benign` row every entry is over-refusal by that category."
                        .into(),
                ));
                let head = ["label", "items"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(
                        Audience::ALL
                            .iter()
                            .map(|a| format!("{} stopped by", a.name())),
                    )
                    .collect();
                let rows = m[0]
                    .rows
                    .keys()
                    .map(|row| {
                        let n = m[0].rows[row].n;
                        let mut cells = vec![row.clone(), n.to_string()];
                        for a in Audience::ALL {
                            let matrix = &m[a.index()];
                            let mut by: Vec<(&String, crate::Rate)> = matrix
                                .rows
                                .get(row)
                                .map(|r| {
                                    r.stopped.keys().map(|c| (c, matrix.rate(row, c))).collect()
                                })
                                .unwrap_or_default();
                            by.sort_by(|x, y| y.1.k.cmp(&x.1.k).then(x.0.cmp(y.0)));
                            let text: Vec<String> = by
                                .iter()
                                .map(|(c, x)| {
                                    let own = if *c == row { " (own)" } else { "" };
                                    format!("{c}{own} {}/{} ({})", x.k, x.n, pct(x.value()))
                                })
                                .collect();
                            cells.push(if text.is_empty() {
                                "–".into()
                            } else {
                                text.join(", ")
                            });
                        }
                        cells
                    })
                    .collect();
                b.push(Block::Table(head, rows));
            }
            // Sweeps.
            if let Some(sweeps) = r.sweeps.get(set.as_str())
                && !sweeps.is_empty()
            {
                b.push(Block::Heading(3, "Threshold sweep".into()));
                b.push(Block::Para(
                    "For each category, the share of its unsafe items scoring at or above a \
                     threshold (not_unsafe) and of its benign near misses scoring below it \
                     (not_overrefuse), on the category score alone (the policy's action and \
                     audience aside). The policy's thresholds are in brackets."
                        .into(),
                ));
                let mut head = vec!["threshold".to_string()];
                head.extend(sweeps.keys().map(|c| {
                    let t = r.thresholds.get(c).copied().unwrap_or([0.5; 3]);
                    format!("{c} [{:.2}]", t[a.index()])
                }));
                let n = sweeps.values().next().map(Vec::len).unwrap_or(0);
                let rows = (0..n)
                    .step_by(2)
                    .map(|i| {
                        let mut row = vec![format!(
                            "{:.2}",
                            sweeps
                                .values()
                                .next()
                                .map(|s| s[i].threshold)
                                .unwrap_or(0.0)
                        )];
                        for s in sweeps.values() {
                            row.push(format!(
                                "{} / {}",
                                pct(s[i].not_unsafe.value()),
                                pct(s[i].not_overrefuse.value())
                            ));
                        }
                        row
                    })
                    .collect();
                b.push(Block::Table(head, rows));
            }
            // Items that went wrong.
            let wrong: Vec<Vec<String>> = r
                .items
                .iter()
                .zip(&r.outcomes)
                .filter(|(i, _)| i.set == *set)
                .filter_map(|(i, o)| {
                    let any = o.stopped(i.audience)?;
                    // An unsafe item is right only when one of its own categories stopped it.
                    let stopped = if i.benign() {
                        any
                    } else {
                        i.labels
                            .iter()
                            .any(|l| o.stopped_in(i.audience, l) == Some(true))
                    };
                    let label = if i.benign() {
                        format!(
                            "benign{}",
                            i.near
                                .as_deref()
                                .map(|n| format!(" (near {n})"))
                                .unwrap_or_default()
                        )
                    } else {
                        i.labels.join(", ")
                    };
                    let wrong = stopped == i.benign();
                    wrong.then(|| {
                        vec![
                            i.id.clone(),
                            label,
                            if stopped {
                                "stopped".into()
                            } else if any {
                                "stopped by another category".into()
                            } else {
                                "let through".into()
                            },
                            shorten(&o.rationale, 220),
                        ]
                    })
                })
                .collect();
            if !wrong.is_empty() {
                b.push(Block::Heading(
                    3,
                    format!("Wrong decisions ({})", wrong.len()),
                ));
                b.push(Block::Table(
                    vec![
                        "item".into(),
                        "label".into(),
                        "outcome".into(),
                        "rationale".into(),
                    ],
                    wrong,
                ));
            }
            let not_run: Vec<Vec<String>> = r
                .items
                .iter()
                .zip(&r.outcomes)
                .filter(|(i, _)| i.set == *set)
                .filter_map(|(i, o)| {
                    o.error
                        .as_ref()
                        .map(|e| vec![i.id.clone(), "error".into(), e.clone()])
                        .or_else(|| {
                            o.skipped
                                .as_ref()
                                .map(|s| vec![i.id.clone(), "skipped".into(), s.clone()])
                        })
                })
                .collect();
            if !not_run.is_empty() {
                b.push(Block::Heading(
                    3,
                    format!("Not decided ({})", not_run.len()),
                ));
                b.push(Block::Table(
                    vec!["item".into(), "".into(), "why".into()],
                    not_run,
                ));
            }
        }
        b
    }

    /// Writes `report.md`, `report.html`, `summary.json` and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        std::fs::create_dir_all(dir).map_err(file_error(dir))?;
        let plots = match crate::plots::plots(self.results, self.reference, dir) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("eval: plots skipped: {e}");
                Vec::new()
            }
        };
        let doc = self.document(&plots);
        let summary = serde_json::to_string_pretty(&self.summary_json())
            .map_err(|e| EvalError::Input(format!("summary.json: {e}")))?;
        for (name, text) in [
            ("report.md", markdown(&doc)),
            ("report.html", html(&doc, dir)?),
            ("summary.json", summary),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(file_error(&path))?;
        }
        Ok(())
    }

    /// Every number of the report, machine-readable.
    pub fn summary_json(&self) -> Value {
        let r = self.results;
        let rate = |x: &crate::Rate| {
            let (lo, hi) = x.wilson().unzip();
            json!({"k": x.k, "n": x.n, "rate": x.value(), "ci95": [lo, hi]})
        };
        let sets: serde_json::Map<String, Value> = r
            .cells
            .iter()
            .map(|(set, cats)| {
                let categories: serde_json::Map<String, Value> = cats
                    .iter()
                    .map(|(cat, row)| {
                        let audiences: serde_json::Map<String, Value> = Audience::ALL
                            .iter()
                            .map(|a| {
                                let c = &row[a.index()];
                                (
                                    a.name().to_string(),
                                    json!({
                                        "not_unsafe": rate(&c.not_unsafe),
                                        "not_overrefuse": rate(&c.not_overrefuse),
                                        "allowed_by_policy": c.allowed_by_policy,
                                    }),
                                )
                            })
                            .collect();
                        (cat.clone(), Value::Object(audiences))
                    })
                    .collect();
                let sweeps: serde_json::Map<String, Value> = r
                    .sweeps
                    .get(set)
                    .map(|s| {
                        s.iter()
                            .map(|(cat, pts)| {
                                (
                                    cat.clone(),
                                    Value::Array(
                                        pts.iter()
                                            .map(|p| {
                                                json!({
                                                    "threshold": p.threshold,
                                                    "not_unsafe": p.not_unsafe.value(),
                                                    "not_overrefuse": p.not_overrefuse.value(),
                                                })
                                            })
                                            .collect(),
                                    ),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let confusion = r.confusion.get(set).map(|m| {
                    Audience::ALL
                        .iter()
                        .map(|a| {
                            let rows: serde_json::Map<String, Value> = m[a.index()]
                                .rows
                                .iter()
                                .map(|(row, counts)| {
                                    let flagged: serde_json::Map<String, Value> = counts
                                        .stopped
                                        .keys()
                                        .map(|c| (c.clone(), rate(&m[a.index()].rate(row, c))))
                                        .collect();
                                    (row.clone(), json!({"n": counts.n, "stopped_by": flagged}))
                                })
                                .collect();
                            (a.name().to_string(), Value::Object(rows))
                        })
                        .collect::<serde_json::Map<_, _>>()
                });
                let benign = r.benign.get(set).map(|b| {
                    Audience::ALL
                        .iter()
                        .map(|a| (a.name().to_string(), rate(&b[a.index()])))
                        .collect::<serde_json::Map<_, _>>()
                });
                (
                    set.clone(),
                    json!({
                        "items": self.count(set),
                        "audience": headline_audience(r, set).name(),
                        "categories": categories,
                        "all_benign": benign,
                        "sweeps": sweeps,
                        "confusion": confusion,
                        "cascade": r.cascade.as_ref().and_then(|(band, per_set)| {
                            per_set.get(set).map(|x| {
                                json!({"band": band, "sent": rate(x)})
                            })
                        }),
                        "refined": r.refined.get(set).map(rate),
                    }),
                )
            })
            .collect();
        let errors: Vec<Value> = r
            .items
            .iter()
            .zip(&r.outcomes)
            .filter_map(|(i, o)| {
                o.error
                    .as_ref()
                    .map(|e| json!({"id": i.id, "error": e}))
                    .or_else(|| {
                        o.skipped
                            .as_ref()
                            .map(|s| json!({"id": i.id, "skipped": s}))
                    })
            })
            .collect();
        json!({
            "policy_version": r.policy_version,
            "items": r.items.len(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sets": sets,
            "reference": self.reference.categories.iter().map(|(k, t)| (k.clone(), json!({
                "not_unsafe": t.not_unsafe, "not_overrefuse": t.not_overrefuse,
            }))).collect::<serde_json::Map<_, _>>(),
            "targets_missed": self.missed,
            "not_decided": errors,
        })
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                out.push_str(&format!("{} {text}\n\n", "#".repeat(*level as usize)));
            }
            Block::Para(text) => out.push_str(&format!("{text}\n\n")),
            Block::Table(head, rows) => {
                out.push_str(&format!(
                    "| {} |\n",
                    head.iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
                out.push_str(&format!("|{}\n", " --- |".repeat(head.len())));
                for r in rows {
                    out.push_str(&format!(
                        "| {} |\n",
                        r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                    ));
                }
                out.push('\n');
            }
            Block::Image(file, alt) => out.push_str(&format!("![{alt}]({file})\n\n")),
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline code spans (`x`) become <code>.
fn inline(s: &str) -> String {
    let e = esc(s);
    let mut out = String::new();
    for (i, part) in e.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(&part.replace("*stopped*", "<em>stopped</em>"));
        }
    }
    out
}

fn html(blocks: &[Block], dir: &Path) -> Result<String, EvalError> {
    let mut body = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                body.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            }
            Block::Para(text) => body.push_str(&format!("<p>{}</p>\n", inline(text))),
            Block::Table(head, rows) => {
                body.push_str("<table><thead><tr>");
                for h in head {
                    body.push_str(&format!("<th>{}</th>", inline(h)));
                }
                body.push_str("</tr></thead><tbody>\n");
                for r in rows {
                    body.push_str("<tr>");
                    for c in r {
                        let class = match c.as_str() {
                            "no" => " class=\"miss\"",
                            "yes" => " class=\"met\"",
                            _ => "",
                        };
                        body.push_str(&format!("<td{class}>{}</td>", inline(c)));
                    }
                    body.push_str("</tr>\n");
                }
                body.push_str("</tbody></table>\n");
            }
            Block::Image(file, alt) => {
                let path = dir.join(file);
                let bytes = std::fs::read(&path).map_err(file_error(&path))?;
                body.push_str(&format!(
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
                    esc(alt),
                    base64(&bytes),
                    esc(alt)
                ));
            }
        }
    }
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>clipguard evaluation</title>\n<style>\nbody{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\ntable{{border-collapse:collapse;margin:1em 0;font-size:0.9em}}\nth,td{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\nth{{background:#f3f3f3}}\ntd.miss{{background:#fde2e2}}\ntd.met{{background:#e2f5e2}}\ncode{{background:#f3f3f3;padding:0 3px}}\nimg{{max-width:100%}}\n</style></head><body>\n{body}</body></html>\n"
    ))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}

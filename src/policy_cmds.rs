//! Policy commands: `check-prompt` and `check-input` (input blocking, the gRPC `Moderation`
//! code) and `replay`
//! (re-deciding stored clips under another policy).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clipguard_pipeline::{edges, topics};
use clipguard_policy::{Audience, Policy};
use clipguard_schemas::{Decision, Signal};
use clipguard_text::prompt::PromptChecker;
use serde_json::json;

use clipguard_monitor::json::CategoryJson;
use clipguard_topology::Config;
use clipguard_topology::input::InputChecker;

/// `check-input`: the prompt and image files through [`InputChecker`].
pub async fn check_input(
    cfg: &Config,
    (audience, consented): (Audience, &[String]),
    json: bool,
    prompt: &str,
    files: &[std::path::PathBuf],
) -> anyhow::Result<ExitCode> {
    let mut images = Vec::new();
    for f in files {
        images.push(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?);
    }
    let checker = InputChecker::from_config(cfg).map_err(|e| anyhow::anyhow!(e))?;
    let r = checker
        .check_consented(prompt, images, audience, consented)
        .await?;
    let v = r.verdict.clone().unwrap_or_default();
    let mut out = clipguard_monitor::json::verdict_json(&v);
    out["decision"] = json!(r.decision().word());
    out["audience"] = json!(r.audience);
    out["minor_present"] = json!(r.minor_present);
    let minor = if r.minor_present {
        "minor present: "
    } else {
        ""
    };
    let line = format!("{}  {minor}{}", r.decision().word(), v.rationale);
    Ok(report(json.then_some(out), r.decision(), line))
}

/// Exit status of `check-prompt` and `check-input` when not allowed (0 = allowed).
pub const BLOCKED_EXIT: u8 = 3;

/// Prints the JSON object, else the one-line summary; the exit status of the decision.
fn report(json: Option<serde_json::Value>, decision: Decision, line: String) -> ExitCode {
    println!("{}", json.map_or(line, |j| j.to_string()));
    match decision {
        Decision::Allow => ExitCode::SUCCESS,
        _ => ExitCode::from(BLOCKED_EXIT),
    }
}

pub fn check_prompt(
    cfg: &Config,
    audience: Audience,
    json: bool,
    text: &str,
) -> anyhow::Result<ExitCode> {
    let mut prompt = text.to_string();
    if text == "-" {
        prompt.clear();
        std::io::stdin()
            .read_to_string(&mut prompt)
            .context("reading the prompt from standard input")?;
    }
    let classifier = cfg.classify.text().load()?;
    let policy = cfg.policy.load()?;
    let checker = PromptChecker::new(
        Arc::new(classifier),
        Arc::new(policy),
        cfg.classify.max_text_bytes,
    );
    let r = checker.check(&prompt, audience);
    let categories: Vec<_> = r.categories.iter().map(CategoryJson::from).collect();
    let out = json!({
        "decision": r.decision().word(),
        "audience": r.audience,
        "categories": categories,
        "rationale": r.rationale,
        "policy_version": r.policy_version,
    });
    let line = format!("{}  {}", r.decision().word(), r.rationale);
    Ok(report(json.then_some(out), r.decision(), line))
}

pub async fn replay(
    cfg: &Config,
    candidate: &Path,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let active = cfg.policy.load()?;
    let candidate = Policy::load(candidate)?;
    let (consumer, ends) =
        edges::topic_reader(&cfg.kafka, topics::SIGNALS, edges::From::Beginning).await?;
    let mut signals: Vec<Signal> = Vec::new();
    let mut clips = std::collections::HashSet::new();
    let mut unreadable = 0usize;
    edges::read_topic(
        &consumer,
        Some(&ends),
        Some(std::time::Duration::from_secs(10)),
        |payload| {
            match prost::Message::decode(payload) {
                Ok(s) => {
                    let s: Signal = s;
                    if let Some(max) = limit
                        && !clips.contains(&s.clip_id)
                        && clips.len() >= max
                    {
                        return true;
                    }
                    clips.insert(s.clip_id.clone());
                    signals.push(s);
                }
                Err(_) => unreadable += 1,
            }
            true
        },
    )
    .await?;
    let graph = clipguard_topology::registry::Registry::default().graph()?;
    let wait = clipguard_monitor::Wait::new(&cfg.monitor, &graph).map_err(anyhow::Error::msg)?;
    let report = clipguard_monitor::replay::replay(signals, &wait, &active, &candidate);
    if json {
        let mut j = report.json();
        j["unreadable_signals"] = json!(unreadable);
        println!("{j}");
    } else {
        print!("{}", report.text());
        if unreadable > 0 {
            println!("{unreadable} stored signals could not be read and were skipped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `clipguard text-cv`: the text heads' operating points by cross-validation on the exemplars.
pub fn text_cv(
    cfg: &Config,
    folds: usize,
    repeats: usize,
    max_benign_above: usize,
    refine: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(folds >= 2, "--folds must be at least 2");
    let (policy, embedder) = match refine {
        false => cfg.classify.text().parts()?,
        true => cfg.classify.text().refine_parts()?.map(|(p, e)| (p, Some(e))).context(
            "the text policy has no [refine] section: there is no refining encoder to cross-validate",
        )?,
    };
    let embedder = embedder
        .context("classify.text_model is empty: there are no embedding heads to cross-validate")?;
    let rows =
        clipguard_text::cross_validate(&policy, &embedder, folds, repeats, max_benign_above)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "text policy {} ({}): {repeats} × {folds}-fold cross-validation on its exemplars; chosen = the lowest \
         raw score ≥ 0.50 that at most {max_benign_above} benign exemplar(s) reach out of fold \
         (on average over the repeats)",
        policy.version, embedder.name
    );
    println!(
        "{:<22} {:>4} {:>6} {:>8} {:>7} {:>8} {:>8} {:>7}",
        "category", "pos", "benign", "current", "recall", "benign≥", "chosen", "recall"
    );
    for r in &rows {
        println!(
            "{:<22} {:>4} {:>6} {:>8.2} {:>6.1}% {:>8.1} {:>8.2} {:>6.1}%  {}",
            r.category,
            r.positives,
            r.benign,
            r.current,
            100.0 * r.recall_current,
            r.benign_above_current,
            r.chosen,
            100.0 * r.recall_chosen,
            if (r.current - r.chosen).abs() < 0.005 {
                "same"
            } else {
                "differs"
            }
        );
        for (s, x) in &r.benign_hits {
            println!("    benign up to {x:.2}: {s}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

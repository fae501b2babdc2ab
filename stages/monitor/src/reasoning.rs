//! The optional reasoning backend: an OpenAI-compatible chat-completions API (vLLM, llama.cpp's
//! server, Ollama; serving e.g. gpt-oss-safeguard or Llama Guard) reads the policy and the
//! clip's evidence and answers a decision per audience with a rationale, as JSON under a
//! strict schema.
//!
//! The deterministic policy engine always decides first; the model's answer replaces its
//! per-audience decisions only when it arrives in time and parses under the schema, and never
//! goes below the floor that no model may lower: hash-bank matches, failed or missing stages,
//! and `minors_sexual`. Any failure (server down, HTTP error, timeout, malformed or truncated
//! JSON, unknown category) keeps the policy engine's verdict and records why in
//! `Verdict.fallback` and a `reasoning_fallback:<kind>` reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clipguard_schemas::{Decision, Verdict};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use clipguard_policy::{self as policy, Audience, Policy, evidence_phrase, shorten};

use crate::decide::Findings;

/// Settings of the reasoning backend (`[monitor.reasoning]`); off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReasoningConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8080/v1`; empty = off.
    pub url: String,
    /// Model name sent in the request (and recorded as `reasoning:<model>` in verdicts).
    pub model: String,
    /// Environment variable holding an API key, sent as a bearer token; empty = none.
    pub api_key_env: String,
    /// Seconds one decision may take (also bounded by the clip's deadline).
    pub timeout_s: f64,
    /// Requests in flight at once; further clips wait for a slot within their timeout.
    pub max_concurrency: usize,
    /// Completion length limit.
    pub max_tokens: u32,
    /// Characters of transcript, prompt and scene description sent (each).
    pub max_text_chars: usize,
    /// Which clips the model decides: `all` (every clip), or `uncertain` (the cascade: only
    /// clips with a category score inside [`ReasoningConfig::uncertain_band`] and no hard
    /// finding that blocks anyway; the rest keep the policy engine's verdict without a call).
    pub consult: Consult,
    /// `[lo, hi]` on the stages' score scale (0.5 is every category's operating point): a
    /// score in it is uncertain enough to ask the model.
    pub uncertain_band: [f32; 2],
}

/// When the reasoning model is consulted (`monitor.reasoning.consult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consult {
    All,
    Uncertain,
}

impl Default for ReasoningConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key_env: String::new(),
            timeout_s: 10.0,
            max_concurrency: 4,
            max_tokens: 384,
            max_text_chars: 4000,
            consult: Consult::All,
            uncertain_band: [0.35, 0.65],
        }
    }
}

impl ReasoningConfig {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Whether a clip with these findings goes to the model, and why: with `consult = "all"`
    /// always; with `"uncertain"`, the first category whose score lies in the band, unless a
    /// hard finding blocks whatever the model says.
    pub fn wants(&self, f: &Findings) -> Option<String> {
        match self.consult {
            Consult::All => Some("every clip is consulted".to_string()),
            Consult::Uncertain => uncertain(f, self.uncertain_band),
        }
    }
}

/// The first category (in name order) whose score lies in `[lo, hi]`, as `category score`,
/// unless a hard finding blocks the clip in every audience anyway (see [`in_band`]).
pub fn uncertain(f: &Findings, band: [f32; 2]) -> Option<String> {
    if f.floor() == Decision::Block {
        return None;
    }
    let scores = f.plain_scores();
    in_band(&scores, band).then(|| {
        let (name, s) = scores
            .iter()
            .find(|(_, s)| (band[0]..=band[1]).contains(*s))
            .map_or(("", 0.0), |(n, s)| (n.as_str(), *s));
        format!(
            "{name} {s:.2} is in the uncertain band [{}, {}]",
            band[0], band[1]
        )
    })
}

/// Whether a clip's category scores make it uncertain: one in `[lo, hi]` — the potential-minor
/// finding only when some category scores at least `lo` (it moves a clip between the adult
/// and the under-18 rules, which matters only when something else was found).
pub fn in_band(scores: &std::collections::BTreeMap<String, f32>, [lo, hi]: [f32; 2]) -> bool {
    let found = scores
        .iter()
        .any(|(n, s)| n.as_str() != policy::POTENTIAL_MINOR && *s >= lo);
    scores
        .iter()
        .any(|(n, s)| (lo..=hi).contains(s) && (n.as_str() != policy::POTENTIAL_MINOR || found))
}

impl ReasoningConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !self.enabled() {
            return;
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!(
                "monitor.reasoning.url: `{}` must start with http:// or https://",
                self.url
            ));
        }
        if self.model.trim().is_empty() {
            problems.push("monitor.reasoning.model: required when url is set".into());
        }
        if self.timeout_s.is_nan() || self.timeout_s <= 0.0 {
            problems.push(format!(
                "monitor.reasoning.timeout_s: {} must be > 0",
                self.timeout_s
            ));
        }
        if self.max_concurrency == 0 {
            problems.push("monitor.reasoning.max_concurrency: must be >= 1".into());
        }
        let [lo, hi] = self.uncertain_band;
        if !(0.0 <= lo && lo < hi && hi <= 1.0) {
            problems.push(format!(
                "monitor.reasoning.uncertain_band: [{lo}, {hi}] must be two scores with 0 <= lo < hi <= 1"
            ));
        }
        if self.max_tokens < 32 {
            problems.push(format!(
                "monitor.reasoning.max_tokens: {} is too few for a decision (>= 32)",
                self.max_tokens
            ));
        }
    }
}

/// Why the reasoning backend's answer was not used.
#[derive(Debug, Clone, PartialEq)]
pub enum Fallback {
    /// No time left before the clip's deadline.
    Deadline,
    /// No answer (or no free slot) within the timeout.
    Timeout(Duration),
    /// Could not connect or the connection failed.
    Unavailable(String),
    /// The server answered with an HTTP error.
    Http(u16, String),
    /// The answer did not parse under the schema.
    Malformed(String),
}

impl Fallback {
    /// Short machine-readable kind (`reasoning_fallback:<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Fallback::Deadline => "deadline",
            Fallback::Timeout(_) => "timeout",
            Fallback::Unavailable(_) => "unavailable",
            Fallback::Http(..) => "http_error",
            Fallback::Malformed(_) => "malformed",
        }
    }
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Deadline => write!(f, "deadline: no time left before the clip's deadline"),
            Fallback::Timeout(d) => write!(f, "timeout: no answer within {:.1} s", d.as_secs_f64()),
            Fallback::Unavailable(e) => write!(f, "unavailable: {e}"),
            Fallback::Http(code, body) => write!(f, "http_error: status {code}: {body}"),
            Fallback::Malformed(e) => write!(f, "malformed: {e}"),
        }
    }
}

/// The model's decision, after strict parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct Reasoned {
    /// Per audience (`Audience::ALL` order).
    pub columns: [Decision; 3],
    /// Policy categories the model says the clip violates.
    pub categories: Vec<String>,
    pub rationale: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    adult: String,
    under_18: String,
    public_feed: String,
    categories: Vec<String>,
    rationale: String,
}

/// The JSON schema the answer must follow (sent as `response_format`).
pub fn schema(policy: &Policy) -> Value {
    let decision = json!({"type": "string", "enum": ["allow", "review", "block"]});
    let names: Vec<&String> = policy.categories.keys().collect();
    json!({
        "type": "object",
        "properties": {
            "adult": decision,
            "under_18": decision,
            "public_feed": decision,
            "categories": {
                "type": "array",
                "items": {"type": "string", "enum": names},
                "maxItems": policy.categories.len(),
            },
            "rationale": {"type": "string", "minLength": 1, "maxLength": 600},
        },
        "required": ["adult", "under_18", "public_feed", "categories", "rationale"],
        "additionalProperties": false,
    })
}

/// Parses a chat-completions response body strictly: one choice, not cut off by the length
/// limit, its content one JSON object with exactly the schema's fields, decisions among
/// allow/review/block, categories named by the policy, a non-empty rationale.
pub fn parse_response(body: &str, policy: &Policy) -> Result<Reasoned, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("response has no choices[0]")?;
    if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
        return Err("the answer was cut off at max_tokens".into());
    }
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or("choices[0].message.content is missing or not a string")?;
    let a: Answer = serde_json::from_str(content.trim()).map_err(|e| {
        format!(
            "content does not match the schema: {e}: {}",
            shorten(content, 200)
        )
    })?;
    let word = |field: &str, w: &str| {
        Decision::from_word(w.trim())
            .ok_or_else(|| format!("{field}: `{w}` is not one of allow, review, block"))
    };
    let columns = [
        word("adult", &a.adult)?,
        word("under_18", &a.under_18)?,
        word("public_feed", &a.public_feed)?,
    ];
    for c in &a.categories {
        if !policy.categories.contains_key(c) {
            return Err(format!("categories: `{c}` is not a policy category"));
        }
    }
    if a.rationale.trim().is_empty() {
        return Err("rationale: empty".into());
    }
    Ok(Reasoned {
        columns,
        categories: a.categories,
        rationale: a.rationale.trim().to_string(),
    })
}

fn cut(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push_str(" […]");
    }
    out
}

/// The chat messages: the policy as the system prompt, the evidence as the user message.
pub fn messages(f: &Findings, policy: &Policy, max_chars: usize) -> Value {
    let system = format!(
        "You are a content-safety reviewer for AI-generated video. Apply this policy (TOML: \
         for each category and audience, the score at which it counts and the action) to the \
         clip described by the user. Classifier scores are evidence, not verdicts: weigh the \
         context (news, education, fiction, cooking are allowed). Answer with one JSON object \
         only: a decision (allow, review or block) for each audience adult, under_18 and \
         public_feed, the violated policy categories, and a rationale of one or two sentences \
         a reviewer can read in ten seconds.\n\n{}",
        policy.source
    );
    let categories: Vec<Value> = f
        .scores
        .iter()
        .map(|(name, s)| {
            json!({
                "category": name,
                "score": (s.score * 1000.0).round() / 1000.0,
                "evidence": s.evidence.iter().take(3).map(evidence_phrase).collect::<Vec<_>>(),
            })
        })
        .collect();
    let hard: Vec<&str> = f.hard.iter().map(|h| h.rationale.as_str()).collect();
    let audience = f.context.audience.clone().unwrap_or_default();
    let user = json!({
        "clip_id": f.clip_id,
        "audience": f.audience.map(Audience::name),
        "prompt": cut(&f.context.prompt, max_chars),
        "scene_description": cut(&f.context.scene_description, max_chars),
        "transcript": cut(&f.transcript, max_chars),
        "depicted_people": audience.depicted_likeness_ids,
        "consented_people": audience.consented_likeness_ids,
        "category_scores": categories,
        "findings_that_always_apply": hard,
    });
    json!([
        {"role": "system", "content": system},
        {"role": "user", "content": user.to_string()},
    ])
}

/// A client for one OpenAI-compatible endpoint, bounded in concurrency.
#[derive(Debug, Clone)]
pub struct Reasoner {
    cfg: ReasoningConfig,
    endpoint: String,
    /// One HTTP agent (connection pool, TLS roots) for every call.
    agent: ureq::Agent,
    slots: Arc<Semaphore>,
    api_key: Option<String>,
}

impl Reasoner {
    pub fn new(cfg: ReasoningConfig) -> Self {
        let endpoint = format!("{}/chat/completions", cfg.url.trim_end_matches('/'));
        let api_key = (!cfg.api_key_env.is_empty())
            .then(|| std::env::var(&cfg.api_key_env).ok())
            .flatten();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .user_agent(concat!("clipguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            slots: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            endpoint,
            agent,
            api_key,
            cfg,
        }
    }

    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// Asks the model; returns its parsed decision or why not. Waits at most the configured
    /// timeout and never past `deadline`.
    pub async fn reason(
        &self,
        f: &Findings,
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Reasoned, Fallback> {
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = Duration::from_secs_f64(self.cfg.timeout_s).min(left);
        if budget < Duration::from_millis(10) {
            return Err(Fallback::Deadline);
        }
        let body = json!({
            "model": self.cfg.model,
            "messages": messages(f, policy, self.cfg.max_text_chars),
            "temperature": 0,
            "max_tokens": self.cfg.max_tokens,
            "stream": false,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "clipguard_decision", "strict": true, "schema": schema(policy)},
            },
        })
        .to_string();
        let started = Instant::now();
        let call = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| Fallback::Unavailable("the client is shutting down".into()))?;
            let left = budget.saturating_sub(started.elapsed());
            let endpoint = self.endpoint.clone();
            let key = self.api_key.clone();
            let agent = self.agent.clone();
            let text =
                tokio::task::spawn_blocking(move || post(&agent, &endpoint, key, body, left))
                    .await
                    .map_err(|e| Fallback::Unavailable(format!("request task: {e}")))??;
            parse_response(&text, policy).map_err(Fallback::Malformed)
        };
        match tokio::time::timeout(budget, call).await {
            Ok(r) => r,
            Err(_) => Err(Fallback::Timeout(budget)),
        }
    }
}

/// Upper bound on a response body read.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

fn post(
    agent: &ureq::Agent,
    endpoint: &str,
    key: Option<String>,
    body: String,
    timeout: Duration,
) -> Result<String, Fallback> {
    let mut req = agent
        .post(endpoint)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", "application/json");
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    let mut resp = req.send(body).map_err(|e| match e {
        ureq::Error::Timeout(_) => Fallback::Timeout(timeout),
        other => Fallback::Unavailable(format!("{endpoint}: {other}")),
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => Fallback::Timeout(timeout),
            other => Fallback::Unavailable(format!("{endpoint}: reading the answer: {other}")),
        })?;
    if !(200..300).contains(&status) {
        return Err(Fallback::Http(status, shorten(&text, 200)));
    }
    Ok(text)
}

/// Applies the model's decision to the policy engine's verdict: its per-audience decisions,
/// raised to the floor no model may lower (hash matches, failed or missing stages,
/// `minors_sexual`, `provenance_unverified`), and its rationale first.
pub fn apply(v: &mut Verdict, f: &Findings, r: &Reasoned, model: &str) {
    let mut floor = f.floor();
    // Categories no model may lower: sexual content involving minors, and a manifest the
    // policy requires and the clip lacks (the model is not shown provenance).
    for c in v.categories.iter().filter(|c| {
        c.category == policy::MINORS_SEXUAL || c.category == policy::PROVENANCE_UNVERIFIED
    }) {
        floor = floor.max(c.decision());
    }
    let columns = r.columns.map(|d| d.max(floor));
    let mut audiences = v.audiences.unwrap_or_default();
    for (a, d) in Audience::ALL.iter().zip(columns) {
        a.set(&mut audiences, d);
    }
    let engine_said = v.rationale.clone();
    v.audiences = Some(audiences);
    v.decision = columns.iter().copied().max().unwrap_or(Decision::Allow) as i32;
    v.engine = format!("reasoning:{model}");
    v.fallback.clear();
    for c in &r.categories {
        let reason = format!("reasoning:{c}");
        if !v.reasons.contains(&reason) {
            v.reasons.push(reason);
        }
    }
    let raised = if r.columns != columns {
        " (raised to the policy's floor)"
    } else {
        ""
    };
    v.rationale = format!(
        "{model}: {}{raised}. Policy engine: {engine_said}",
        r.rationale
    );
}

/// Records that the reasoning backend was not used: the policy engine's verdict stands.
pub fn record_fallback(v: &mut Verdict, why: &Fallback) {
    v.fallback = why.to_string();
    let reason = format!("reasoning_fallback:{}", why.kind());
    if !v.reasons.contains(&reason) {
        v.reasons.push(reason);
    }
    v.rationale = format!("{} (reasoning backend not used: {why})", v.rationale);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(content: &str, finish: &str) -> String {
        json!({"choices": [{"index": 0, "finish_reason": finish,
            "message": {"role": "assistant", "content": content}}]})
        .to_string()
    }

    #[test]
    fn a_well_formed_answer_parses() {
        let p = Policy::default_policy();
        let r = parse_response(
            &body(
                r#"{"adult":"allow","under_18":"block","public_feed":"review","categories":["self_harm"],"rationale":"talks about self-harm"}"#,
                "stop",
            ),
            &p,
        )
        .unwrap();
        assert_eq!(
            r.columns,
            [Decision::Allow, Decision::Block, Decision::Review]
        );
        assert_eq!(r.categories, vec!["self_harm".to_string()]);
    }

    #[test]
    fn anything_off_schema_is_malformed_with_the_reason() {
        let p = Policy::default_policy();
        for (content, finish, want) in [
            ("not json", "stop", "does not match the schema"),
            (
                r#"{"adult":"allow","under_18":"allow","public_feed":"allow","categories":[],"rationale":"ok","extra":1}"#,
                "stop",
                "unknown field `extra`",
            ),
            (
                r#"{"adult":"maybe","under_18":"allow","public_feed":"allow","categories":[],"rationale":"ok"}"#,
                "stop",
                "adult: `maybe`",
            ),
            (
                r#"{"adult":"allow","under_18":"allow","public_feed":"allow","categories":["weather"],"rationale":"ok"}"#,
                "stop",
                "`weather` is not a policy category",
            ),
            (
                r#"{"adult":"allow","under_18":"allow","public_feed":"allow","categories":[],"rationale":" "}"#,
                "stop",
                "rationale: empty",
            ),
            (r#"{"adult":"allow","under_18":"#, "length", "cut off"),
        ] {
            let e = parse_response(&body(content, finish), &p).unwrap_err();
            assert!(e.contains(want), "{want} not in {e}");
        }
        assert!(
            parse_response("<html>", &p)
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_response("{\"choices\":[]}", &p)
                .unwrap_err()
                .contains("choices[0]")
        );
    }
}

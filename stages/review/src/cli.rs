//! `clipguard cases …`: the review queues from the terminal, on the same database and with the
//! same rules as every other way in (a decision needs a claim and a reason; everything is
//! audited; the review worker publishes what a decision queued).

use clap::{Args, Subcommand, ValueEnum};
use clipguard_schemas::Decision;

use crate::ReviewConfig;
use crate::accounts::Role;
use crate::db::{Case, Cases, Decided};

#[derive(Debug, Args)]
pub struct CasesArgs {
    /// The cases database (default: review.database_url).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// One JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CasesCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Block,
}

impl From<DecisionArg> for Decision {
    fn from(d: DecisionArg) -> Self {
        match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Block => Decision::Block,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CasesCommand {
    /// Queues (category × audience) with the cases waiting in each.
    Queues,
    /// Cases, newest first.
    List {
        /// `open`, `claimed` or `decided` (default: all).
        #[arg(long, default_value = "")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One case: the verdict that opened it, its decision, and its audit trail.
    Show { id: i64 },
    /// A clip's verdict revisions, oldest first, and what made each (`policy`,
    /// `reasoning:<model>`, `review:<reviewer>`).
    History { clip_id: String },
    /// Takes the oldest waiting case of a queue (any when not given) for a reviewer, leased for
    /// review.lease_s.
    Claim {
        #[arg(long)]
        reviewer: String,
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long, default_value = "")]
        audience: String,
    },
    /// Decides a case the reviewer holds: allow or block per audience (`--all` sets every
    /// one) and the reason.
    Decide {
        id: i64,
        #[arg(long)]
        reviewer: String,
        #[arg(long, value_enum)]
        all: Option<DecisionArg>,
        #[arg(long, value_enum)]
        adult: Option<DecisionArg>,
        #[arg(long = "under-18", value_enum)]
        under_18: Option<DecisionArg>,
        #[arg(long = "public-feed", value_enum)]
        public_feed: Option<DecisionArg>,
        #[arg(long)]
        reason: String,
    },
    /// Console accounts: list, add, change.
    #[command(subcommand)]
    Accounts(AccountsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Every account with its role and standing.
    List,
    /// Adds an account. The password is read from CLIPGUARD_REVIEW_PASSWORD or, without it,
    /// from the first line of standard input (never from an argument: it would be in the
    /// process list and the shell's history).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum, default_value = "reviewer")]
        role: RoleArg,
    },
    /// Changes an account's role, standing or password (`--password`: read as for `add`).
    /// Any change signs the account out of the console.
    Change {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        #[arg(long)]
        password: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Reporter,
    Reviewer,
    Lead,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Reporter => Role::Reporter,
            RoleArg::Reviewer => Role::Reviewer,
            RoleArg::Lead => Role::Lead,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// A claim or decision from the terminal is made by an account, as in the console: an active
/// one with the reviewer role or above.
async fn reviewer_account(cases: &Cases, id: &str) -> anyhow::Result<()> {
    match cases.accounts().await?.into_iter().find(|a| a.id == id) {
        Some(a) if a.disabled_ms.is_none() && a.role >= Role::Reviewer => Ok(()),
        Some(a) => anyhow::bail!(
            "account `{id}` is {} ({}): it cannot review",
            if a.disabled_ms.is_some() {
                "disabled"
            } else {
                "active"
            },
            a.role.name()
        ),
        None => anyhow::bail!(
            "no account `{id}`: add it with `clipguard cases accounts add --id {id}` (claims and \
             decisions are made by reviewer accounts, in the console and here)"
        ),
    }
}

/// The actor an account change from the terminal is audited as.
fn terminal_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("terminal:{user}")
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("CLIPGUARD_REVIEW_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn case_json(c: &Case) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "clip_id": c.clip_id,
        "verdict_revision": c.verdict_revision,
        "queue": {"category": c.category, "audience": c.audience},
        "state": c.state,
        "reviewer": c.reviewer,
        "lease_until_ms": c.lease_until_ms,
        "created_ms": c.created_ms,
        "decided_ms": c.decided_ms,
        "decision": c.decision,
        "reason": c.reason,
        "rationale": c.verdict.rationale,
        "kind": c.kind,
        "statement": c.statement,
        "reports": c.reports,
        "appealed": c.verdict.audiences.map(|_| crate::console::pages::audience_words(&c.verdict)),
        "rescan": c.rescan.as_ref().map(|r| serde_json::json!({
            "policy_version": r.policy_version,
            "audiences": crate::console::pages::audience_words(r),
            "rationale": r.rationale,
        })),
    })
}

fn case_line(c: &Case) -> String {
    format!(
        "{:>6}  {:<9} {:<24} {:<12} {}  {}",
        c.id,
        c.state,
        format!("{}/{}", c.category, c.audience),
        c.reviewer.as_deref().unwrap_or("-"),
        c.clip_id,
        c.decision.as_deref().unwrap_or(""),
    )
}

/// Runs one `cases` command; the text printed, or the error.
pub async fn run(cfg: &ReviewConfig, args: CasesArgs) -> anyhow::Result<String> {
    let url = args.database_url.clone().unwrap_or_else(|| cfg.url());
    let cases = Cases::connect(&url, 2).await?;
    let now = cases.now_ms();
    let json = args.json;
    Ok(match args.command {
        CasesCommand::Queues => {
            let queues = cases.queues(now).await?;
            if json {
                queues
                    .iter()
                    .map(|q| {
                        serde_json::json!({"category": q.category, "audience": q.audience, "open": q.open})
                            .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else if queues.is_empty() {
                "no case waits".into()
            } else {
                queues
                    .iter()
                    .map(|q| format!("{:>6}  {}/{}", q.open, q.category, q.audience))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        CasesCommand::List { state, limit } => {
            let list = cases.list(&state, limit).await?;
            if json {
                list.iter()
                    .map(|c| case_json(c).to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                list.iter().map(case_line).collect::<Vec<_>>().join("\n")
            }
        }
        CasesCommand::Show { id } => {
            let (case, audit) = cases.show(id).await?;
            if json {
                let mut j = case_json(&case);
                j["audit"] = audit
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "at_ms": a.at_ms, "actor": a.actor, "action": a.action,
                            "case_id": a.case_id, "detail": a.detail,
                        })
                    })
                    .collect();
                j.to_string()
            } else {
                let mut lines = vec![case_line(&case), format!("  {}", case.verdict.rationale)];
                for a in &audit {
                    lines.push(format!(
                        "  {}  {:<8} {:<12} {}",
                        a.at_ms, a.action, a.actor, a.detail
                    ));
                }
                lines.join("\n")
            }
        }
        CasesCommand::History { clip_id } => {
            let revisions = cases.history(&clip_id).await?;
            anyhow::ensure!(
                !revisions.is_empty(),
                "no verdict of clip `{clip_id}` reached the review worker"
            );
            revisions
                .iter()
                .map(|r| {
                    if json {
                        serde_json::json!({
                            "revision": r.revision, "engine": r.engine, "decision": r.decision,
                            "policy_version": r.policy_version, "decided_at_ms": r.decided_at_ms,
                        })
                        .to_string()
                    } else {
                        format!(
                            "{:>4}  {:<20} {:<16} {}",
                            r.revision, r.engine, r.policy_version, r.decision
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        CasesCommand::Claim {
            reviewer,
            category,
            audience,
        } => {
            reviewer_account(&cases, &reviewer).await?;
            match cases
                .claim(&reviewer, &category, &audience, cfg.lease_ms(), now)
                .await?
            {
                Some(c) if json => case_json(&c).to_string(),
                Some(c) => format!("{}\n  {}", case_line(&c), c.verdict.rationale),
                None => anyhow::bail!("no case waits in that queue"),
            }
        }
        CasesCommand::Decide {
            id,
            reviewer,
            all,
            adult,
            under_18,
            public_feed,
            reason,
        } => {
            reviewer_account(&cases, &reviewer).await?;
            let pick = |one: Option<DecisionArg>, name: &str| {
                one.or(all).map(Decision::from).ok_or_else(|| {
                    anyhow::anyhow!("no decision for {name}: give --{name} or --all")
                })
            };
            let decided = Decided {
                audiences: [
                    pick(adult, "adult")?,
                    pick(under_18, "under-18")?,
                    pick(public_feed, "public-feed")?,
                ],
                reason,
            };
            let (verdict, _) = cases.decide(id, &reviewer, &decided, now).await?;
            if json {
                serde_json::json!({
                    "case": id, "clip_id": verdict.clip_id, "verdict_revision": verdict.revision,
                    "decision": Decision::try_from(verdict.decision).unwrap_or_default().word(),
                    "engine": verdict.engine,
                })
                .to_string()
            } else {
                format!(
                    "case {id} decided: {} — verdict revision {} of {} queued for publishing",
                    Decision::try_from(verdict.decision)
                        .unwrap_or_default()
                        .word(),
                    verdict.revision,
                    verdict.clip_id
                )
            }
        }
        CasesCommand::Accounts(command) => accounts(&cases, command, json, now).await?,
    })
}

async fn accounts(
    cases: &Cases,
    command: AccountsCommand,
    json: bool,
    now: i64,
) -> anyhow::Result<String> {
    Ok(match command {
        AccountsCommand::List => {
            let list = cases.accounts().await?;
            list.iter()
                .map(|a| {
                    if json {
                        let standing = if a.disabled_ms.is_some() {
                            "disabled"
                        } else {
                            "active"
                        };
                        serde_json::json!({
                            "id": a.id, "role": a.role.name(), "standing": standing,
                            "created_ms": a.created_ms, "failed_signins": a.failed_signins,
                            "throttled_until_ms": a.throttled_until_ms,
                        })
                        .to_string()
                    } else {
                        format!("{:<24} {:<9} {}", a.id, a.role.name(), a.standing(now))
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        AccountsCommand::Add { id, role } => {
            let password = read_password()?;
            let role = Role::from(role);
            cases
                .add_account(&terminal_actor(), &id, role, &password, now)
                .await?;
            format!("account {id} added as {}", role.name())
        }
        AccountsCommand::Change {
            id,
            role,
            disable,
            enable,
            password,
        } => {
            let password = if password {
                Some(read_password()?)
            } else {
                None
            };
            let disabled = if disable {
                Some(true)
            } else if enable {
                Some(false)
            } else {
                None
            };
            anyhow::ensure!(
                role.is_some() || disabled.is_some() || password.is_some(),
                "nothing to change: give --role, --disable, --enable or --password"
            );
            cases
                .change_account(
                    &terminal_actor(),
                    &id,
                    role.map(Role::from),
                    password.as_deref(),
                    disabled,
                    now,
                )
                .await?;
            format!("account {id} changed")
        }
    })
}

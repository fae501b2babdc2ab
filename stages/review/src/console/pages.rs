//! The console's HTML, rendered on the server. Every value from a verdict, a case or a user is
//! escaped ([`esc`]); the only script and style are the page's own, allowed by a per-response
//! nonce in the Content-Security-Policy.

use std::fmt::Write as _;

use clipguard_policy::Audience;
use clipguard_schemas::{Decision, Verdict};

use super::frames::FrameSet;
use crate::accounts::{Account, Role, Session};
use crate::db::{AuditEntry, Case, QueueCount};
use crate::reports::Revision;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f7}
header{display:flex;gap:1.2em;align-items:center;padding:.6em 1.2em;background:#24292f;color:#fff}
header a{color:#fff}header .who{margin-left:auto}header form{display:inline}
main{max-width:1100px;margin:1em auto;padding:0 1.2em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.2em}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
.note{padding:.5em .8em;background:#e8f3ff;border-left:4px solid #0969da}
.error{padding:.5em .8em;background:#ffebe9;border-left:4px solid #cf222e}
.frames{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:.4em}
figure img{display:block;height:160px}
.block{color:#cf222e;font-weight:600}.allow{color:#1a7f37}.review{color:#9a6700}
textarea{width:100%;max-width:40em}
";

const SCRIPT: &str = "
for (const b of document.querySelectorAll('button.reveal')) {
  b.addEventListener('click', () => {
    const img = document.getElementById('frame-' + b.dataset.frame);
    img.src = img.dataset.clear;
    img.classList.add('revealed');
    b.disabled = true;
    b.textContent = 'Revealed';
  });
}
";

/// A whole page.
pub fn layout(title: &str, session: Option<&Session>, nonce: &str, body: &str) -> String {
    let nav = match session {
        Some(s) => {
            let mut nav = String::from("<a href=\"/\">Queues</a>");
            if s.role >= Role::Lead {
                nav.push_str("<a href=\"/cases\">Cases</a><a href=\"/audit\">Audit log</a>");
            }
            if s.role >= Role::Admin {
                nav.push_str("<a href=\"/accounts\">Accounts</a>");
            }
            let _ = write!(
                nav,
                "<span class=\"who\">{} ({})</span><form method=\"post\" action=\"/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button id=\"sign-out\">Sign out</button></form>",
                esc(&s.account),
                s.role.name(),
                esc(&s.csrf)
            );
            nav
        }
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · clipguard review</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
         <body><header><strong>clipguard review</strong>{nav}</header><main>{body}</main>\
         <script nonce=\"{nonce}\">{SCRIPT}</script></body></html>",
        esc(title)
    )
}

pub fn sign_in(csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <p><label>Account <input name=\"id\" id=\"id\" autocomplete=\"username\" required></label></p>\
         <p><label>Password <input name=\"password\" id=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label></p>\
         <p><button id=\"sign-in\">Sign in</button></p></form>",
        esc(csrf)
    )
}

fn time(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn decision_word(d: i32) -> &'static str {
    Decision::try_from(d)
        .unwrap_or(Decision::Unspecified)
        .word()
}

fn decision_cell(d: i32) -> String {
    let w = decision_word(d);
    format!("<td class=\"{w}\">{w}</td>")
}

pub fn queues(queues: &[QueueCount], held: &[Case], csrf: &str, note: Option<&str>) -> String {
    let mut out = String::from("<h1>Queues</h1>");
    if let Some(note) = note {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    if !held.is_empty() {
        out.push_str("<h2>Cases you hold</h2><ul>");
        for c in held {
            let _ = write!(
                out,
                "<li><a href=\"/cases/{id}\">Case {id}</a>: {} in {}/{}, until {}</li>",
                esc(&c.clip_id),
                esc(&c.category),
                esc(&c.audience),
                time(c.lease_until_ms.unwrap_or_default()),
                id = c.id
            );
        }
        out.push_str("</ul>");
    }
    if queues.is_empty() {
        out.push_str("<p>Every queue is empty.</p>");
        return out;
    }
    out.push_str(
        "<table id=\"queues\"><tr><th>Category</th><th>Audience</th><th>Waiting</th><th></th></tr>",
    );
    for q in queues {
        let _ = write!(
            out,
            "<tr><td>{c}</td><td>{a}</td><td>{n}</td><td><form method=\"post\" action=\"/claim\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"category\" value=\"{c}\">\
             <input type=\"hidden\" name=\"audience\" value=\"{a}\">\
             <button class=\"claim\" data-queue=\"{c}/{a}\">Open next case</button></form></td></tr>",
            c = esc(&q.category),
            a = esc(&q.audience),
            n = q.open,
            csrf = esc(csrf)
        );
    }
    out.push_str("</table>");
    out
}

/// The job view: what the machine decided and why, the evidence, the frames, provenance, the
/// case's history and, for the reviewer holding it, the decision form.
pub fn case(
    case: &Case,
    audit: &[AuditEntry],
    frames: &FrameSet,
    csrf: &str,
    can_decide: bool,
) -> String {
    let v = &case.verdict;
    let mut out = format!(
        "<h1>Case {} ({})</h1><table><tr><th>Clip</th><td id=\"clip-id\">{}</td></tr>\
         <tr><th>Queue</th><td>{} / {}</td></tr><tr><th>State</th><td id=\"state\">{}{}</td></tr>\
         <tr><th>Verdict</th><td>revision {}, policy {}, engine {}{}</td></tr>\
         <tr><th>Opened</th><td>{}</td></tr></table>",
        case.id,
        esc(&case.kind),
        esc(&case.clip_id),
        esc(&case.category),
        esc(&case.audience),
        esc(&case.state),
        case.reviewer
            .as_deref()
            .map(|r| format!(" by {}", esc(r)))
            .unwrap_or_default(),
        v.revision,
        esc(&v.policy_version),
        esc(&v.engine),
        if v.fallback.is_empty() {
            String::new()
        } else {
            format!(" (fallback: {})", esc(&v.fallback))
        },
        time(case.created_ms)
    );
    let _ = write!(
        out,
        "<p><a href=\"/clips/{}\">Every verdict revision of this clip</a></p>",
        esc(&url_path(&case.clip_id))
    );
    out.push_str(&user_section(case));
    let _ = write!(
        out,
        "<h2>Rationale</h2><p id=\"rationale\">{}</p>",
        esc(&v.rationale)
    );
    match (&case.kind[..], &case.rescan) {
        ("appeal", Some(rescan)) => out.push_str(&side_by_side(v, rescan)),
        ("appeal", None) => {
            out.push_str(&audiences_table(v));
            out.push_str(
                "<p class=\"note\">No re-scan: the clip's signals are no longer kept.</p>",
            );
        }
        _ => out.push_str(&audiences_table(v)),
    }
    out.push_str(&categories_table(v));
    out.push_str(&frames_section(case.id, frames));
    out.push_str(&provenance_section(v));
    if can_decide {
        out.push_str(&decision_form(case, csrf));
    } else if let Some(d) = &case.decision {
        let _ = write!(
            out,
            "<h2>Decision</h2><p>{}: {}</p>",
            esc(d),
            esc(case.reason.as_deref().unwrap_or_default())
        );
    }
    out.push_str("<h2>History</h2>");
    out.push_str(&audit_table(audit));
    out
}

/// A clip id as one path segment.
fn url_path(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// What the user wrote: an appeal's statement, or the reports' reasons.
fn user_section(case: &Case) -> String {
    let Some(statement) = &case.statement else {
        return String::new();
    };
    let title = match case.kind.as_str() {
        "appeal" => "The user's appeal".to_string(),
        _ => format!("Reports ({})", case.reports),
    };
    let lines: String = statement
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<li>{}</li>", esc(l)))
        .collect();
    format!("<h2>{title}</h2><ul id=\"statement\">{lines}</ul>")
}

/// Each audience's decision as a word.
pub fn audience_words(v: &Verdict) -> serde_json::Value {
    let a = v.audiences.unwrap_or_default();
    Audience::ALL
        .iter()
        .map(|aud| {
            (
                aud.name().to_string(),
                serde_json::Value::from(decision_word(aud.of(&a))),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// An appeal: the appealed decision and the re-scan under the policy in force now.
fn side_by_side(appealed: &Verdict, rescan: &Verdict) -> String {
    let (a, b) = (
        appealed.audiences.unwrap_or_default(),
        rescan.audiences.unwrap_or_default(),
    );
    let mut out = format!(
        "<h2>Appealed decision and re-scan</h2><table id=\"both-decisions\"><tr><th>Audience</th>\
         <th>Appealed (revision {}, policy {}, {})</th><th>Re-scan now (policy {})</th></tr>",
        appealed.revision,
        esc(&appealed.policy_version),
        esc(&appealed.engine),
        esc(&rescan.policy_version)
    );
    for audience in Audience::ALL {
        let own = if audience.name() == appealed.audience {
            " (the clip's own)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td>{}{own}</td>{}{}</tr>",
            audience.name(),
            decision_cell(audience.of(&a)),
            decision_cell(audience.of(&b))
        );
    }
    let _ = write!(out, "</table><p>Re-scan: {}</p>", esc(&rescan.rationale));
    out
}

/// The newest cases, for a lead.
pub fn cases(cases: &[Case], state: &str) -> String {
    let mut out = String::from("<h1>Cases</h1><p>");
    for (s, label) in [
        ("", "all"),
        ("open", "open"),
        ("claimed", "claimed"),
        ("decided", "decided"),
        ("superseded", "superseded"),
    ] {
        if s == state {
            let _ = write!(out, "<strong>{label}</strong> ");
        } else {
            let _ = write!(out, "<a href=\"/cases?state={s}\">{label}</a> ");
        }
    }
    out.push_str(
        "</p><table id=\"cases\"><tr><th>Case</th><th>Kind</th><th>Queue</th><th>State</th>\
         <th>Reviewer</th><th>Clip</th><th>Opened</th><th>Decision</th></tr>",
    );
    for c in cases {
        let _ = write!(
            out,
            "<tr><td><a href=\"/cases/{id}\">{id}</a></td><td>{}</td><td>{} / {}</td><td>{}</td>\
             <td>{}</td><td><a href=\"/clips/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            esc(&c.kind),
            esc(&c.category),
            esc(&c.audience),
            esc(&c.state),
            esc(c.reviewer.as_deref().unwrap_or_default()),
            esc(&url_path(&c.clip_id)),
            esc(&c.clip_id),
            time(c.created_ms),
            esc(c.decision.as_deref().unwrap_or_default()),
            id = c.id
        );
    }
    out.push_str("</table>");
    if cases.len() >= 200 {
        out.push_str("<p>The newest 200; `clipguard cases list` reaches the rest.</p>");
    }
    out
}

/// A clip's verdict revisions.
pub fn history(clip_id: &str, revisions: &[Revision]) -> String {
    let mut out = format!(
        "<h1>Clip {}</h1><table id=\"history\"><tr><th>Revision</th><th>Decided</th><th>By</th>\
         <th>Policy</th><th>Decision</th></tr>",
        esc(clip_id)
    );
    for r in revisions {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.revision,
            time(r.decided_at_ms),
            esc(&r.engine),
            esc(&r.policy_version),
            esc(&r.decision)
        );
    }
    out.push_str("</table>");
    if revisions.is_empty() {
        out.push_str("<p>No verdict of this clip reached the review worker.</p>");
    }
    out
}

fn audiences_table(v: &Verdict) -> String {
    let a = v.audiences.unwrap_or_default();
    let mut out =
        String::from("<h2>Machine decision</h2><table><tr><th>Audience</th><th>Decision</th></tr>");
    for audience in Audience::ALL {
        let own = if audience.name() == v.audience {
            " (the clip's own)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td>{}{own}</td>{}</tr>",
            audience.name(),
            decision_cell(audience.of(&a))
        );
    }
    out.push_str("</table>");
    if !v.missing_stages.is_empty() {
        let _ = write!(
            out,
            "<p class=\"error\">Never heard from: {}</p>",
            esc(&v.missing_stages.join(", "))
        );
    }
    out
}

fn categories_table(v: &Verdict) -> String {
    let mut out = String::from(
        "<h2>Scores and evidence</h2><table id=\"categories\"><tr><th>Category</th><th>Score</th>\
         <th>Threshold</th><th>Decision</th><th>Evidence</th></tr>",
    );
    for c in &v.categories {
        let mut evidence = String::new();
        for e in &c.evidence {
            // Transcript spans and hash-bank matches (bank and category; the proto never
            // carries a bank's hashes) are shown as the stages wrote them.
            let at = if e.end_s > e.start_s {
                format!("{:.2}–{:.2} s", e.start_s, e.end_s)
            } else {
                format!("{:.2} s", e.start_s)
            };
            let _ = write!(
                evidence,
                "<div class=\"evidence {}\">{} at {at}: {}</div>",
                esc(&e.kind),
                esc(&e.kind),
                esc(&e.detail)
            );
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td>{}<td>{evidence}</td></tr>",
            esc(&c.category),
            c.score,
            c.threshold,
            decision_cell(c.decision)
        );
    }
    out.push_str("</table>");
    if !v.reasons.is_empty() {
        let _ = write!(out, "<p>Reasons: {}</p>", esc(&v.reasons.join(", ")));
    }
    out
}

fn frames_section(case_id: i64, frames: &FrameSet) -> String {
    let mut out = String::from("<h2>Frames</h2>");
    match frames {
        FrameSet::Unavailable(why) => {
            let _ = write!(out, "<p class=\"note\">No frames: {}</p>", esc(why));
        }
        FrameSet::Frames(list) if list.is_empty() => {
            out.push_str("<p class=\"note\">The clip has no video frames.</p>");
        }
        FrameSet::Frames(list) => {
            out.push_str(
                "<p>Blurred and in greyscale until you reveal one; each reveal is logged.</p>\
                 <div class=\"frames\">",
            );
            for (i, f) in list.iter().enumerate() {
                let _ = write!(
                    out,
                    "<figure><img id=\"frame-{i}\" class=\"thumb\" alt=\"frame at {t:.2} s\" \
                     src=\"/cases/{case_id}/frames/{i}?view=blurred\" \
                     data-clear=\"/cases/{case_id}/frames/{i}?view=clear\">\
                     <figcaption>{t:.2} s <button type=\"button\" class=\"reveal\" \
                     data-frame=\"{i}\">Reveal</button></figcaption></figure>",
                    t = f.t
                );
            }
            out.push_str("</div>");
        }
    }
    out
}

fn provenance_section(v: &Verdict) -> String {
    let Some(p) = &v.provenance else {
        return "<h2>Provenance</h2><p>Not read (the media stage did not answer).</p>".into();
    };
    let mut out = format!(
        "<h2>Provenance</h2><table><tr><th>C2PA manifest</th><td>{}</td></tr>",
        esc(&p.state)
    );
    for (k, val) in [
        ("Claim generator", p.claim_generator.clone()),
        ("Signer", p.signer.clone()),
        (
            "Trusted signer",
            if p.state == "present" {
                p.trusted.to_string()
            } else {
                String::new()
            },
        ),
        ("Actions", p.actions.join("; ")),
        ("Validation errors", p.validation_errors.join("; ")),
        ("Note", p.note.clone()),
    ] {
        if !val.is_empty() {
            let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&val));
        }
    }
    out.push_str("</table>");
    out
}

fn decision_form(case: &Case, csrf: &str) -> String {
    let a = case.verdict.audiences.unwrap_or_default();
    let mut out = format!(
        "<h2>Your decision</h2><form method=\"post\" action=\"/cases/{}/decide\" id=\"decide\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><table>",
        case.id,
        esc(csrf)
    );
    for audience in Audience::ALL {
        let machine = Decision::try_from(audience.of(&a)).unwrap_or(Decision::Unspecified);
        let option = |d: Decision| {
            format!(
                "<option value=\"{w}\"{}>{w}</option>",
                if d == machine { " selected" } else { "" },
                w = d.word()
            )
        };
        let _ = write!(
            out,
            "<tr><th><label for=\"d-{n}\">{n}</label></th><td><select name=\"{n}\" id=\"d-{n}\" \
             required><option value=\"\">choose…</option>{}{}</select></td></tr>",
            option(Decision::Allow),
            option(Decision::Block),
            n = audience.name()
        );
    }
    let _ = write!(
        out,
        "</table><p><label for=\"reason\">Reason (the user may be told)</label><br>\
         <textarea name=\"reason\" id=\"reason\" rows=\"3\" maxlength=\"{}\" required></textarea></p>\
         <p><button id=\"submit-decision\">Decide</button></p></form>",
        crate::db::MAX_REASON_CHARS
    );
    out
}

pub fn audit_table(audit: &[AuditEntry]) -> String {
    let mut out = String::from(
        "<table class=\"audit\"><tr><th>When</th><th>Who</th><th>What</th><th>Case</th>\
         <th>Clip</th><th>Detail</th></tr>",
    );
    for e in audit {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at_ms),
            esc(&e.actor),
            esc(&e.action),
            e.case_id
                .map(|id| format!("<a href=\"/cases/{id}\">{id}</a>"))
                .unwrap_or_default(),
            esc(e.clip_id.as_deref().unwrap_or_default()),
            esc(&e.detail)
        );
    }
    out.push_str("</table>");
    out
}

pub fn accounts(accounts: &[Account], csrf: &str, note: Option<&str>, now_ms: i64) -> String {
    let mut out = String::from("<h1>Accounts</h1>");
    if let Some(note) = note {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    out.push_str(
        "<table><tr><th>Account</th><th>Role</th><th>Since</th><th>Standing</th><th></th></tr>",
    );
    let roles = |current: Role| {
        Role::ALL
            .iter()
            .map(|r| {
                format!(
                    "<option{}>{}</option>",
                    if *r == current { " selected" } else { "" },
                    r.name()
                )
            })
            .collect::<String>()
    };
    for a in accounts {
        let _ = write!(
            out,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>\
             <form method=\"post\" action=\"/accounts/{id}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <select name=\"role\">{}</select>\
             <select name=\"standing\"><option value=\"\">—</option><option value=\"disable\">disable</option>\
             <option value=\"enable\">enable</option></select>\
             <button>Change</button></form></td></tr>",
            a.role.name(),
            time(a.created_ms),
            esc(&a.standing(now_ms)),
            roles(a.role),
            id = esc(&a.id),
            csrf = esc(csrf)
        );
    }
    let _ = write!(
        out,
        "</table><h2>Add an account</h2><form method=\"post\" action=\"/accounts\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <p><label>Account <input name=\"id\" required></label> \
         <label>Role <select name=\"role\">{}</select></label></p>\
         <p><label>Password ({}–{} characters) <input name=\"password\" type=\"password\" \
         autocomplete=\"new-password\" required></label></p><p><button>Add</button></p></form>",
        esc(csrf),
        roles(Role::Reviewer),
        crate::accounts::PASSWORD_CHARS.start(),
        crate::accounts::PASSWORD_CHARS.end()
    );
    out
}

pub fn message(title: &str, text: &str) -> String {
    format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">Back to the queues</a></p>",
        esc(title),
        esc(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_601_600_000), "2026-12-07 00:00:00 UTC");
    }
}

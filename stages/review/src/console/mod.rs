//! The reviewer console: web pages served by the review worker (`review.console_listen`),
//! rendered on the server, with one small script (revealing a frame).
//!
//! - **Sign-in**: accounts in the cases database ([`crate::accounts`]); a session is a random
//!   token in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` with
//!   `review.console_secure_cookie`), stored only as its SHA-256.
//! - **Every request needs a live session**, except the sign-in form itself: pages redirect to
//!   it, everything else answers 401.
//! - **Every form carries the session's CSRF token** (the sign-in form a token of its own, in
//!   a cookie beside it); a POST without the right one, or from another origin, is refused.
//! - **Roles**: a reviewer pulls cases and decides the ones they hold; a lead also reads any
//!   case and the audit log; an admin also manages accounts.
//! - **The HTTP API** (`POST /api/v1/reports`, `/api/v1/appeals`, JSON) is for a platform's
//!   backend: HTTP Basic authentication with a `reporter` account (or any higher role) on
//!   every request, no cookie, no session.
//! - **Wellness**: frames arrive blurred and in greyscale; a reviewer reveals one at a time,
//!   and each reveal is in the audit log.
//! - Pages carry a Content-Security-Policy that allows only their own nonce'd script and style,
//!   no framing, and no form target elsewhere; nothing is cached.

// Handlers answer `Result<Response, Response>` (axum's own pattern: the error is the
// refusal page); boxing every refusal would buy nothing.
#![allow(clippy::result_large_err)]

pub mod frames;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clipguard_schemas::Decision;
use serde::Deserialize;

use crate::ReviewError;
use crate::accounts::{Role, Session, random_hex, same_secret};
use crate::db::{Cases, Decided};
use frames::{FrameSet, Thumbnails};

const SESSION_COOKIE: &str = "clipguard_review";
const SIGN_IN_COOKIE: &str = "clipguard_review_sign_in";

/// What the console's handlers share.
#[derive(Debug)]
pub struct ConsoleState {
    pub cases: Cases,
    pub thumbnails: Thumbnails,
    /// An appeal's re-scan (see [`crate::Rescan`]); `None`: appeals come without one.
    pub rescan: Option<crate::Rescan>,
    pub metrics: crate::metrics::ReviewMetrics,
    pub lease_ms: i64,
    pub session_ms: i64,
    pub secure_cookie: bool,
}

type St = State<Arc<ConsoleState>>;

/// The console's routes.
pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/login", get(sign_in_page).post(sign_in))
        .route("/logout", post(sign_out))
        .route("/", get(queues))
        .route("/claim", post(claim))
        .route("/cases", get(list_cases))
        .route("/cases/{id}", get(show_case))
        .route("/cases/{id}/frames/{n}", get(frame))
        .route("/cases/{id}/decide", post(decide))
        .route("/audit", get(audit))
        .route("/accounts", get(accounts).post(add_account))
        .route("/accounts/{id}", post(change_account))
        .route("/clips/{clip_id}", get(clip_history))
        .route("/api/v1/reports", post(api_report))
        .route("/api/v1/appeals", post(api_appeal))
        .fallback(not_found)
        .layer(axum::middleware::map_response(common_headers))
        .with_state(state)
}

async fn common_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
        // the console's own forms, and the origin check would refuse them.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    r
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(st: &ConsoleState, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if st.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn page(status: StatusCode, title: &str, session: Option<&Session>, body: &str) -> Response {
    let nonce = random_hex(16);
    let html = pages::layout(title, session, &nonce, body);
    let csp = format!(
        "default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

fn failed(e: ReviewError) -> Response {
    let status = match e {
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::Refused(_) => StatusCode::CONFLICT,
        ReviewError::Config(_) | ReviewError::Database(_) => {
            tracing::warn!(error = %e, "review console");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    page(
        status,
        "Not done",
        None,
        &pages::message("Not done", &e.to_string()),
    )
}

/// The request's live session. Without one, a page request is sent to sign in and anything
/// else is refused with 401.
async fn session_of(
    st: &ConsoleState,
    headers: &HeaderMap,
    page: bool,
) -> Result<Session, Response> {
    let found = match cookie(headers, SESSION_COOKIE) {
        Some(token) => st
            .cases
            .session(&token, st.cases.now_ms())
            .await
            .map_err(failed)?,
        None => None,
    };
    found.filter(|s| s.role >= Role::Reviewer).ok_or_else(|| {
        if page {
            redirect("/login")
        } else {
            refused(StatusCode::UNAUTHORIZED, "sign in first")
        }
    })
}

/// A form's POST: from this origin, with the session's CSRF token.
fn check_form(headers: &HeaderMap, expected: &str, sent: &str) -> Result<(), Response> {
    if let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) && origin.split_once("://").map(|(_, h)| h) != Some(host)
    {
        return Err(refused(StatusCode::FORBIDDEN, "cross-origin form refused"));
    }
    if expected.is_empty() || !same_secret(expected, sent) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page",
        ));
    }
    Ok(())
}

fn need(session: &Session, role: Role) -> Result<(), Response> {
    if session.role >= role {
        Ok(())
    } else {
        Err(refused(
            StatusCode::FORBIDDEN,
            &format!("this needs the {} role", role.name()),
        ))
    }
}

type Reply = Result<Response, Response>;

async fn not_found(State(st): St, headers: HeaderMap) -> Reply {
    session_of(&st, &headers, false).await?;
    Ok(refused(StatusCode::NOT_FOUND, "no such page"))
}

async fn sign_in_page(State(st): St, headers: HeaderMap) -> Response {
    if session_of(&st, &headers, false).await.is_ok() {
        return redirect("/");
    }
    sign_in_form(&st, StatusCode::OK, None)
}

fn sign_in_form(st: &ConsoleState, status: StatusCode, error: Option<&str>) -> Response {
    let token = random_hex(32);
    let mut r = page(status, "Sign in", None, &pages::sign_in(&token, error));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(st, SIGN_IN_COOKIE, &token, 900),
    );
    r
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    id: String,
    password: String,
}

async fn sign_in(State(st): St, headers: HeaderMap, Form(f): Form<SignInForm>) -> Reply {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    check_form(&headers, &expected, &f.csrf)?;
    match st
        .cases
        .sign_in(f.id.trim(), &f.password, st.session_ms, st.cases.now_ms())
        .await
        .map_err(failed)?
    {
        Some((token, _)) => {
            let mut r = redirect("/");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&st, SESSION_COOKIE, &token, st.session_ms / 1000),
            );
            h.append(header::SET_COOKIE, set_cookie(&st, SIGN_IN_COOKIE, "", 0));
            Ok(r)
        }
        None => Ok(sign_in_form(
            &st,
            StatusCode::UNAUTHORIZED,
            Some(
                "Wrong account or password, or the account is disabled, or it failed too often \
                 and must wait (up to 15 minutes) before its next try is checked.",
            ),
        )),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(State(st): St, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    check_form(&headers, &s.csrf, &f.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        st.cases
            .sign_out(&token, &s.account, st.cases.now_ms())
            .await
            .map_err(failed)?;
    }
    let mut r = redirect("/login");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&st, SESSION_COOKIE, "", 0));
    Ok(r)
}

#[derive(Deserialize)]
struct QueuesQuery {
    empty: Option<String>,
    decided: Option<i64>,
}

async fn queues(State(st): St, headers: HeaderMap, Query(q): Query<QueuesQuery>) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    let now = st.cases.now_ms();
    let queues = st.cases.queues(now).await.map_err(failed)?;
    let held = st.cases.held_by(&s.account, now).await.map_err(failed)?;
    let note = match (&q.empty, q.decided) {
        (_, Some(id)) => Some(format!(
            "Case {id} decided: the clip's next verdict revision is on its way."
        )),
        (Some(queue), None) => Some(format!("No case waits in {queue}.")),
        _ => None,
    };
    let body = pages::queues(&queues, &held, &s.csrf, note.as_deref());
    Ok(page(StatusCode::OK, "Queues", Some(&s), &body))
}

#[derive(Deserialize)]
struct ClaimForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    audience: String,
}

async fn claim(State(st): St, headers: HeaderMap, Form(f): Form<ClaimForm>) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    check_form(&headers, &s.csrf, &f.csrf)?;
    match st
        .cases
        .claim(
            &s.account,
            &f.category,
            &f.audience,
            st.lease_ms,
            st.cases.now_ms(),
        )
        .await
        .map_err(failed)?
    {
        Some(case) => Ok(redirect(&format!("/cases/{}", case.id))),
        None => Ok(redirect(&format!(
            "/?empty={}",
            url_word(&format!("{}/{}", f.category, f.audience))
        ))),
    }
}

/// A queue name for a query string (category and audience words are `[a-z0-9_:/]`; anything
/// else is dropped).
fn url_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_:/-".contains(*c))
        .collect()
}

/// The case, when `s` may see it (a reviewer the cases they hold, a lead or admin any), and
/// whether `s` holds it.
async fn visible_case(
    st: &ConsoleState,
    s: &Session,
    id: i64,
) -> Result<(crate::db::Case, bool), Response> {
    let case = st.cases.case(id).await.map_err(failed)?;
    let holds = case.state == "claimed"
        && case.reviewer.as_deref() == Some(s.account.as_str())
        && case.lease_until_ms.is_some_and(|t| t >= st.cases.now_ms());
    if !holds && s.role < Role::Lead {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "you do not hold this case: open the next one from a queue",
        ));
    }
    Ok((case, holds))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: String,
}

/// The newest cases of every queue and state, for leads.
async fn list_cases(State(st): St, headers: HeaderMap, Query(q): Query<ListQuery>) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    need(&s, Role::Lead)?;
    let state = match q.state.as_str() {
        "" | "open" | "claimed" | "decided" | "superseded" => q.state,
        other => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                &format!("state `{other}`: open, claimed, decided or superseded"),
            ));
        }
    };
    let cases = st.cases.list(&state, 200).await.map_err(failed)?;
    let body = pages::cases(&cases, &state);
    Ok(page(StatusCode::OK, "Cases", Some(&s), &body))
}

async fn show_case(State(st): St, headers: HeaderMap, Path(id): Path<i64>) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    let (case, holds) = visible_case(&st, &s, id).await?;
    let audit = st.cases.trail(&case).await.map_err(failed)?;
    if !holds {
        // A lead or admin reading a case they do not hold is an access worth a line.
        st.cases
            .audit(
                &s.account,
                "view",
                Some((case.id, &case.clip_id)),
                s.role.name(),
                st.cases.now_ms(),
            )
            .await
            .map_err(failed)?;
    }
    let frames = st.thumbnails.of(case.id, &case.verdict).await;
    let body = pages::case(&case, &audit, &frames, &s.csrf, holds);
    Ok(page(StatusCode::OK, &format!("Case {id}"), Some(&s), &body))
}

#[derive(Deserialize)]
struct FrameQuery {
    view: Option<String>,
}

async fn frame(
    State(st): St,
    headers: HeaderMap,
    Path((id, n)): Path<(i64, usize)>,
    Query(q): Query<FrameQuery>,
) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    let (case, _) = visible_case(&st, &s, id).await?;
    let clear = match q.view.as_deref() {
        Some("clear") => true,
        None | Some("blurred") => false,
        Some(other) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                &format!("view `{other}`: blurred or clear"),
            ));
        }
    };
    let set = st.thumbnails.of(case.id, &case.verdict).await;
    let FrameSet::Frames(list) = &*set else {
        return Err(refused(StatusCode::NOT_FOUND, "no frames"));
    };
    let Some(f) = list.get(n) else {
        return Err(refused(StatusCode::NOT_FOUND, "no such frame"));
    };
    if clear {
        st.cases
            .audit(
                &s.account,
                "reveal",
                Some((case.id, &case.clip_id)),
                &format!("frame {n} at {:.2} s", f.t),
                st.cases.now_ms(),
            )
            .await
            .map_err(failed)?;
    }
    let bytes = if clear { &f.clear } else { &f.blurred };
    let mut r = bytes.clone().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    Ok(r)
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    adult: String,
    #[serde(default)]
    under_18: String,
    #[serde(default)]
    public_feed: String,
    #[serde(default)]
    reason: String,
}

fn decision_of(audience: &str, word: &str) -> Result<Decision, ReviewError> {
    match word {
        "allow" => Ok(Decision::Allow),
        "block" => Ok(Decision::Block),
        _ => Err(ReviewError::Refused(format!(
            "{audience}: choose allow or block"
        ))),
    }
}

async fn decide(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<DecideForm>,
) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    check_form(&headers, &s.csrf, &f.csrf)?;
    let decided = (|| {
        Ok::<_, ReviewError>(Decided {
            audiences: [
                decision_of("adult", &f.adult)?,
                decision_of("under_18", &f.under_18)?,
                decision_of("public_feed", &f.public_feed)?,
            ],
            reason: f.reason.trim().to_string(),
        })
    })()
    .map_err(failed)?;
    st.cases
        .decide(id, &s.account, &decided, st.cases.now_ms())
        .await
        .map_err(failed)?;
    Ok(redirect(&format!("/?decided={id}")))
}

async fn audit(State(st): St, headers: HeaderMap) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    need(&s, Role::Lead)?;
    let entries = st.cases.audit_recent(500).await.map_err(failed)?;
    let body = format!(
        "<h1>Audit log</h1><p>The newest 500 actions. The log is append-only: the database \
         refuses to change or delete a line.</p>{}",
        pages::audit_table(&entries)
    );
    Ok(page(StatusCode::OK, "Audit log", Some(&s), &body))
}

#[derive(Deserialize)]
struct AccountsQuery {
    note: Option<String>,
}

async fn accounts(State(st): St, headers: HeaderMap, Query(q): Query<AccountsQuery>) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    need(&s, Role::Admin)?;
    let list = st.cases.accounts().await.map_err(failed)?;
    let note = q.note.map(|n| format!("Account {} saved.", url_word(&n)));
    let body = pages::accounts(&list, &s.csrf, note.as_deref(), st.cases.now_ms());
    Ok(page(StatusCode::OK, "Accounts", Some(&s), &body))
}

#[derive(Deserialize)]
struct AddAccountForm {
    #[serde(default)]
    csrf: String,
    id: String,
    role: String,
    password: String,
}

async fn add_account(State(st): St, headers: HeaderMap, Form(f): Form<AddAccountForm>) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    check_form(&headers, &s.csrf, &f.csrf)?;
    need(&s, Role::Admin)?;
    let role = Role::parse(&f.role).map_err(failed)?;
    st.cases
        .add_account(
            &s.account,
            f.id.trim(),
            role,
            &f.password,
            st.cases.now_ms(),
        )
        .await
        .map_err(failed)?;
    Ok(redirect(&format!(
        "/accounts?note={}",
        url_word(f.id.trim())
    )))
}

#[derive(Deserialize)]
struct ChangeAccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    standing: String,
}

async fn change_account(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ChangeAccountForm>,
) -> Reply {
    let s = session_of(&st, &headers, false).await?;
    check_form(&headers, &s.csrf, &f.csrf)?;
    need(&s, Role::Admin)?;
    let role = if f.role.is_empty() {
        None
    } else {
        Some(Role::parse(&f.role).map_err(failed)?)
    };
    let disabled = match f.standing.as_str() {
        "" => None,
        "disable" => Some(true),
        "enable" => Some(false),
        other => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                &format!("standing `{other}`: disable or enable"),
            ));
        }
    };
    // The current role is sent with every change; only a different one is a change.
    let current = st
        .cases
        .accounts()
        .await
        .map_err(failed)?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| failed(ReviewError::NotFound(format!("account `{id}`"))))?;
    let role = role.filter(|r| *r != current.role);
    if id == s.account && (disabled == Some(true) || role.is_some_and(|r| r < Role::Admin)) {
        return Err(refused(
            StatusCode::CONFLICT,
            "an admin cannot disable or demote their own account (another admin can)",
        ));
    }
    st.cases
        .change_account(&s.account, &id, role, None, disabled, st.cases.now_ms())
        .await
        .map_err(failed)?;
    Ok(redirect(&format!("/accounts?note={}", url_word(&id))))
}

#[derive(Deserialize)]
struct ClipPath {
    clip_id: String,
}

/// A clip's verdict revisions and who made each, for a lead (or a reviewer holding one of
/// the clip's cases).
async fn clip_history(State(st): St, headers: HeaderMap, Path(p): Path<ClipPath>) -> Reply {
    let s = session_of(&st, &headers, true).await?;
    if s.role < Role::Lead {
        let held = st
            .cases
            .held_by(&s.account, st.cases.now_ms())
            .await
            .map_err(failed)?;
        if !held.iter().any(|c| c.clip_id == p.clip_id) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "a clip's history is for leads, or for the reviewer holding one of its cases",
            ));
        }
    }
    let history = st.cases.history(&p.clip_id).await.map_err(failed)?;
    let body = pages::history(&p.clip_id, &history);
    Ok(page(StatusCode::OK, "Clip history", Some(&s), &body))
}

/// The caller of the HTTP API: HTTP Basic credentials of an active `reporter` account (the
/// platform's backend, not the user; console accounts are refused here, so their passwords
/// cannot be tried through the API), and a JSON body (a browser's cross-site form cannot send
/// `application/json`). No `WWW-Authenticate` challenge: browsers must not keep credentials
/// for this origin.
async fn api_caller(st: &ConsoleState, headers: &HeaderMap) -> Result<String, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(api_refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the API takes Content-Type: application/json",
        ));
    }
    let unauthorized = || {
        api_refusal(
            StatusCode::UNAUTHORIZED,
            "the API needs HTTP Basic credentials of a reporter account",
        )
    };
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()))
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthorized)?;
    let (id, password) = creds.split_once(':').ok_or_else(unauthorized)?;
    match st
        .cases
        .authenticate(id, password, st.cases.now_ms())
        .await
        .map_err(failed)?
    {
        Some(Role::Reporter) => Ok(id.to_string()),
        _ => Err(unauthorized()),
    }
}

fn api_refusal(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": why}))).into_response()
}

/// Standard base64 (RFC 4648, padded or not); `None` when malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

fn api_error(e: ReviewError) -> Response {
    let status = match &e {
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::Refused(_) => StatusCode::CONFLICT,
        ReviewError::Config(_) => StatusCode::BAD_REQUEST,
        ReviewError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        axum::Json(serde_json::json!({"error": e.to_string()})),
    )
        .into_response()
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({"error": format!("the body is not the expected JSON: {e}")}),
            ),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiReport {
    clip_id: String,
    reason: String,
    reporter: String,
}

/// `POST /api/v1/reports` `{"clip_id", "reason", "reporter"}` → `{"case_id", "opened",
/// "reports"}`.
async fn api_report(State(st): St, headers: HeaderMap, body: axum::body::Bytes) -> Reply {
    api_caller(&st, &headers).await?;
    let r: ApiReport = json_body(&body)?;
    let taken = crate::take_report(&st.cases, &st.metrics, &r.clip_id, &r.reason, &r.reporter)
        .await
        .map_err(api_error)?;
    Ok(axum::Json(serde_json::json!({
        "case_id": taken.case_id, "opened": taken.opened, "reports": taken.reports,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiAppeal {
    clip_id: String,
    statement: String,
    appellant: String,
}

/// `POST /api/v1/appeals` `{"clip_id", "statement", "appellant"}` → `{"case_id",
/// "appealed_revision", "rescan": {"policy_version", "decision", "audiences"} | null}`.
async fn api_appeal(State(st): St, headers: HeaderMap, body: axum::body::Bytes) -> Reply {
    api_caller(&st, &headers).await?;
    let a: ApiAppeal = json_body(&body)?;
    let (taken, rescan) = crate::take_appeal(
        &st.cases,
        st.rescan.as_ref(),
        &st.metrics,
        &a.clip_id,
        &a.statement,
        &a.appellant,
    )
    .await
    .map_err(api_error)?;
    let rescan = rescan.map(|v| {
        serde_json::json!({
            "policy_version": v.policy_version,
            "decision": Decision::try_from(v.decision).unwrap_or_default().word(),
            "audiences": pages::audience_words(&v),
        })
    });
    Ok(axum::Json(serde_json::json!({
        "case_id": taken.case_id,
        "appealed_revision": taken.appealed.revision,
        "rescan": rescan,
    }))
    .into_response())
}

//! The reviewer console over real HTTP on 127.0.0.1, on a SQLite cases database, with a real
//! clip decoded for its frames: every endpoint refuses a request without a session, every
//! form refuses a missing or wrong CSRF token and another origin, roles hold, frames come
//! blurred until revealed (and each reveal is audited), and a decision made through the form
//! queues the clip's next verdict revision.
//!
//! The browser test (real Chromium over WebDriver, with a broker) is `tests/console.rs` at the
//! workspace root.

// Tests report failure by panicking.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clipguard_review::accounts::Role;
use clipguard_review::console::frames::Thumbnails;
use clipguard_review::console::{ConsoleState, router};
use clipguard_review::db::{Cases, Outgoing};
use clipguard_schemas::{
    AudienceDecisions, CategoryDecision, Decision, Evidence, MediaRef, Verdict,
};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP/1.1 request over a fresh connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookies: &[(String, String)],
    form: Option<&[(&str, &str)]>,
    origin: Option<&str>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookies.is_empty() {
        let c: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
    }
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    let body = form
        .map(|f| {
            f.iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    if form.is_some() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    exchange(addr, &req).await
}

/// Sends one whole request over a fresh connection; the reply.
async fn exchange(addr: SocketAddr, req: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// The value of `name="NAME" value="…"` in a page (the first).
fn hidden(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn clip() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/threatexchange/vpdq/videos/doorknob-hd-no-bar.mp4");
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CLIPGUARD_REQUIRE_CONFORMANCE").as_deref() == Ok("1") {
        panic!("{} is missing", p.display());
    }
    eprintln!("skipping: {} is missing", p.display());
    None
}

fn verdict(clip: &std::path::Path) -> Verdict {
    let bytes = std::fs::read(clip).unwrap();
    let review = Decision::Review as i32;
    Verdict {
        clip_id: "clip-console".into(),
        decision: review,
        audiences: Some(AudienceDecisions {
            adult: Decision::Allow as i32,
            under_18: review,
            public_feed: review,
        }),
        audience: "public_feed".into(),
        engine: "policy".into(),
        policy_version: "test-1".into(),
        rationale: "review under_18, public_feed — violence_gore scored 0.71 <script>".into(),
        categories: vec![CategoryDecision {
            category: "violence_gore".into(),
            score: 0.71,
            threshold: 0.6,
            decision: review,
            evidence: vec![
                Evidence {
                    kind: "frame".into(),
                    start_s: 1.0,
                    end_s: 1.0,
                    detail: "graphic 0.71".into(),
                },
                Evidence {
                    kind: "transcript".into(),
                    start_s: 0.5,
                    end_s: 2.0,
                    detail: "\"look at the blood\"".into(),
                },
            ],
            audiences: Some(AudienceDecisions {
                adult: Decision::Allow as i32,
                under_18: review,
                public_feed: review,
            }),
        }],
        media: Some(MediaRef {
            location: Some(clipguard_schemas::media_ref::Location::Uri(format!(
                "file://{}",
                clip.canonicalize().unwrap().display()
            ))),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            size_bytes: bytes.len() as u64,
            content_type: "video/mp4".into(),
        }),
        ..Default::default()
    }
}

async fn serve(cases: Cases) -> SocketAddr {
    let store =
        clipguard_pipeline::store::MediaStore::open(&clipguard_pipeline::store::StoreConfig {
            url: tempfile::tempdir().unwrap().keep().display().to_string(),
            ..Default::default()
        })
        .unwrap();
    let state = Arc::new(ConsoleState {
        cases,
        thumbnails: Thumbnails::new(Some(store), clipguard_media::MediaConfig::default()),
        rescan: None,
        metrics: Default::default(),
        lease_ms: 600_000,
        session_ms: 3_600_000,
        secure_cookie: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    addr
}

/// Signs in; the session cookie and the page's CSRF token.
async fn sign_in(addr: SocketAddr, id: &str, password: &str) -> (Vec<(String, String)>, String) {
    let form = http(addr, "GET", "/login", &[], None, None).await;
    assert_eq!(form.status, 200);
    let token = hidden(&form.text(), "csrf");
    let r = http(
        addr,
        "POST",
        "/login",
        &form.cookies(),
        Some(&[("csrf", &token), ("id", id), ("password", password)]),
        None,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let session: Vec<_> = r
        .cookies()
        .into_iter()
        .filter(|(k, v)| k == "clipguard_review" && !v.is_empty())
        .collect();
    assert_eq!(session.len(), 1, "{:?}", r.headers);
    let home = http(addr, "GET", "/", &session, None, None).await;
    assert_eq!(home.status, 200);
    let csrf = hidden(&home.text(), "csrf");
    (session, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_without_a_session_or_csrf_token_and_a_form_decision_queues_the_revision()
 {
    let Some(clip) = clip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("review.db").display());
    let cases = Cases::connect(&url, 1).await.unwrap();
    let v = verdict(&clip);
    let case_id = cases.open(&v, 1_000).await.unwrap().unwrap();
    cases
        .add_account(
            "test",
            "alice",
            Role::Reviewer,
            "correct horse battery",
            1_000,
        )
        .await
        .unwrap();
    cases
        .add_account(
            "test",
            "bob",
            Role::Reviewer,
            "another long password",
            1_000,
        )
        .await
        .unwrap();
    cases
        .add_account("test", "lee", Role::Lead, "a lead's long password", 1_000)
        .await
        .unwrap();
    // A short password is refused.
    assert!(
        cases
            .add_account("test", "eve", Role::Admin, "short", 1_000)
            .await
            .is_err()
    );
    let addr = serve(cases.clone()).await;

    // Without a session: pages send to the sign-in form, everything else is 401, and nothing
    // of a case shows. A forged or expired-looking cookie is no session.
    let forged = vec![("clipguard_review".to_string(), "ab".repeat(32))];
    let endpoints: &[(&str, String)] = &[
        ("GET", "/".into()),
        ("GET", "/audit".into()),
        ("GET", "/accounts".into()),
        ("GET", format!("/cases/{case_id}")),
        ("GET", format!("/cases/{case_id}/frames/0?view=clear")),
        ("GET", format!("/cases/{case_id}/frames/0")),
        ("GET", "/no/such/page".into()),
        ("GET", "/clips/clip-console".into()),
        ("GET", "/cases".into()),
        ("POST", "/claim".into()),
        ("POST", format!("/cases/{case_id}/decide")),
        ("POST", "/logout".into()),
        ("POST", "/accounts".into()),
        ("POST", "/accounts/alice".into()),
    ];
    for cookies in [&Vec::new(), &forged] {
        for (method, path) in endpoints {
            let form: &[(&str, &str)] = &[
                ("csrf", "x"),
                ("category", ""),
                ("audience", ""),
                ("adult", "block"),
                ("under_18", "block"),
                ("public_feed", "block"),
                ("reason", "r"),
                ("id", "mallory"),
                ("role", "admin"),
                ("password", "a long enough password"),
            ];
            let r = http(
                addr,
                method,
                path,
                cookies,
                (*method == "POST").then_some(form),
                None,
            )
            .await;
            assert!(
                matches!(r.status, 303 | 401),
                "{method} {path}: {} {}",
                r.status,
                r.text()
            );
            if r.status == 303 {
                assert_eq!(r.header("location"), Some("/login"), "{method} {path}");
            }
            assert!(!r.text().contains("clip-console"), "{method} {path}");
        }
    }
    assert!(
        cases
            .accounts()
            .await
            .unwrap()
            .iter()
            .all(|a| a.id != "mallory"),
        "no account was added without a session"
    );

    // Signing in needs the sign-in form's own token; a wrong password is refused.
    let form = http(addr, "GET", "/login", &[], None, None).await;
    let token = hidden(&form.text(), "csrf");
    let csp = form.header("content-security-policy").unwrap().to_string();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let r = http(
        addr,
        "POST",
        "/login",
        &[],
        Some(&[
            ("csrf", &token),
            ("id", "alice"),
            ("password", "correct horse battery"),
        ]),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "no sign-in cookie: {}", r.text());
    let r = http(
        addr,
        "POST",
        "/login",
        &form.cookies(),
        Some(&[
            ("csrf", &token),
            ("id", "alice"),
            ("password", "wrong password!!"),
        ]),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.cookies().iter().all(|(k, _)| k != "clipguard_review"));

    let (alice, csrf) = sign_in(addr, "alice", "correct horse battery").await;
    let home = http(addr, "GET", "/", &alice, None, None).await;
    assert!(home.text().contains("violence_gore"), "{}", home.text());
    // A reviewer sees neither the audit log nor the accounts, nor a case they do not hold.
    for path in ["/audit", "/accounts", "/clips/clip-console", "/cases"] {
        assert_eq!(
            http(addr, "GET", path, &alice, None, None).await.status,
            403,
            "{path}"
        );
    }
    let r = http(
        addr,
        "GET",
        &format!("/cases/{case_id}"),
        &alice,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 403);

    // Forms without the token, with a wrong one, or from another origin are refused.
    let claim = |csrf: &str| {
        vec![
            ("csrf".to_string(), csrf.to_string()),
            ("category".into(), "violence_gore".into()),
            ("audience".into(), "public_feed".into()),
        ]
    };
    for (token, origin) in [
        ("", None),
        ("0".repeat(64).as_str(), None),
        (csrf.as_str(), Some("http://evil.example")),
    ] {
        let f = claim(token);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = http(addr, "POST", "/claim", &alice, Some(&f), origin).await;
        assert_eq!(r.status, 403, "{token:?} {origin:?}: {}", r.text());
    }
    assert_eq!(
        cases.list("open", 10).await.unwrap().len(),
        1,
        "nothing claimed"
    );

    let f = claim(&csrf);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = http(
        addr,
        "POST",
        "/claim",
        &alice,
        Some(&f),
        Some(&format!("http://{addr}")),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/cases/{case_id}").as_str())
    );

    // The job view: rationale (escaped), scores, the transcript span, frames blurred.
    let job = http(
        addr,
        "GET",
        &format!("/cases/{case_id}"),
        &alice,
        None,
        None,
    )
    .await;
    assert_eq!(job.status, 200);
    let page = job.text();
    assert!(
        page.contains("violence_gore scored 0.71 &lt;script&gt;"),
        "{page}"
    );
    assert!(page.contains("&quot;look at the blood&quot;"), "{page}");
    assert!(page.contains("id=\"frame-0\""), "{page}");
    assert!(page.contains(&format!("src=\"/cases/{case_id}/frames/0?view=blurred\"")));
    let blurred = http(
        addr,
        "GET",
        &format!("/cases/{case_id}/frames/0"),
        &alice,
        None,
        None,
    )
    .await;
    assert_eq!(
        (blurred.status, blurred.header("content-type")),
        (200, Some("image/jpeg"))
    );
    let clear = http(
        addr,
        "GET",
        &format!("/cases/{case_id}/frames/0?view=clear"),
        &alice,
        None,
        None,
    )
    .await;
    assert_eq!(clear.status, 200);
    let (b, c) = (
        image::load_from_memory(&blurred.body).unwrap(),
        image::load_from_memory(&clear.body).unwrap(),
    );
    assert_eq!(b.color(), image::ColorType::L8, "the blurred frame is grey");
    assert_ne!(
        c.color(),
        image::ColorType::L8,
        "the revealed frame has colour"
    );
    // Another reviewer may not look at alice's case or its frames.
    let (bob, bob_csrf) = sign_in(addr, "bob", "another long password").await;
    for path in [
        format!("/cases/{case_id}"),
        format!("/cases/{case_id}/frames/0?view=clear"),
    ] {
        assert_eq!(
            http(addr, "GET", &path, &bob, None, None).await.status,
            403,
            "{path}"
        );
    }
    // ... nor decide it, even with his own valid token.
    let decision: &[(&str, &str)] = &[
        ("adult", "allow"),
        ("under_18", "block"),
        ("public_feed", "block"),
        ("reason", "graphic injury, not news"),
    ];
    let with = |csrf: &str| {
        let mut f = vec![("csrf", csrf.to_string())];
        f.extend(decision.iter().map(|(k, v)| (*k, v.to_string())));
        f
    };
    let f = with(&bob_csrf);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = http(
        addr,
        "POST",
        &format!("/cases/{case_id}/decide"),
        &bob,
        Some(&f),
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    // A decision needs every audience.
    let r = http(
        addr,
        "POST",
        &format!("/cases/{case_id}/decide"),
        &alice,
        Some(&[("csrf", &csrf), ("adult", "allow"), ("reason", "x")]),
        None,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let f = with(&csrf);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = http(
        addr,
        "POST",
        &format!("/cases/{case_id}/decide"),
        &alice,
        Some(&f),
        None,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());

    // The decision is queued as the clip's next verdict revision, by alice.
    let mut sent = Vec::new();
    cases
        .publish(10, async |items: Vec<Outgoing>| {
            sent.extend(items);
            Ok(())
        })
        .await
        .unwrap();
    let revised = sent
        .iter()
        .find_map(|o| match o {
            Outgoing::Verdict(v) => Some(v),
            _ => None,
        })
        .expect("a verdict revision");
    assert_eq!(
        (revised.revision, revised.engine.as_str()),
        (1, "review:alice")
    );

    // The lead reads the audit log: sign-ins, the failed one, the claim, the reveal, the
    // decision.
    let (lee, _) = sign_in(addr, "lee", "a lead's long password").await;
    assert_eq!(
        http(addr, "GET", "/audit", &lee, None, None).await.status,
        200
    );
    // The lead lists the cases: alice's, decided.
    let list = http(addr, "GET", "/cases?state=decided", &lee, None, None).await;
    assert_eq!(list.status, 200);
    assert!(
        list.text()
            .contains(&format!("<a href=\"/cases/{case_id}\">{case_id}</a>")),
        "{}",
        list.text()
    );
    assert_eq!(
        http(addr, "GET", "/cases?state=bogus", &lee, None, None)
            .await
            .status,
        400
    );
    // A lead reading a case they do not hold leaves a line too.
    let r = http(addr, "GET", &format!("/cases/{case_id}"), &lee, None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("decided"),
        "the lead sees the decided case"
    );
    let log = http(addr, "GET", "/audit", &lee, None, None).await.text();
    for action in [
        "sign_in_failed",
        "sign_in",
        "claim",
        "reveal",
        "decide",
        "view",
    ] {
        assert!(
            log.contains(&format!("<td>{action}</td>")),
            "{action}: {log}"
        );
    }
    // Signing out ends the session for good.
    let home = http(addr, "GET", "/", &alice, None, None).await.text();
    let r = http(
        addr,
        "POST",
        "/logout",
        &alice,
        Some(&[("csrf", &hidden(&home, "csrf"))]),
        None,
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(http(addr, "GET", "/", &alice, None, None).await.status, 303);
}

/// A POST of `body` as `content_type`, with optional HTTP Basic credentials.
async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    basic: Option<(&str, &str)>,
    body: &str,
) -> Reply {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((id, password)) = basic {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{id}:{password}").as_bytes())
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    exchange(addr, &req).await
}

/// A JSON POST with optional HTTP Basic credentials.
async fn post_json(addr: SocketAddr, path: &str, basic: Option<(&str, &str)>, body: &str) -> Reply {
    post(addr, path, "application/json", basic, body).await
}

/// What a cross-site `<form enctype="text/plain">` would send: the status.
async fn post_form_as_text(addr: SocketAddr, path: &str, creds: (&str, &str)) -> u16 {
    let body = r#"{"clip_id":"clip-console","reason":"r","reporter":"u"}"#;
    post(addr, path, "text/plain", Some(creds), body)
        .await
        .status
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The HTTP API for a platform's backend: users' reports and appeals with HTTP Basic
/// credentials of a `reporter` account; without them, with a wrong password or with a body that
/// is not the expected JSON, refused; a reporter account has no console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_takes_reports_and_appeals_from_a_reporter_account_only() {
    let Some(clip) = clip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("review.db").display());
    let cases = Cases::connect(&url, 1).await.unwrap();
    let mut v = verdict(&clip);
    v.decision = Decision::Block as i32;
    v.audiences = Some(AudienceDecisions {
        adult: Decision::Allow as i32,
        under_18: Decision::Block as i32,
        public_feed: Decision::Block as i32,
    });
    cases.record_verdict(&v).await.unwrap();
    cases
        .add_account(
            "test",
            "platform",
            Role::Reporter,
            "platform api password",
            1,
        )
        .await
        .unwrap();
    let addr = serve(cases.clone()).await;
    let report = r#"{"clip_id":"clip-console","reason":"violent","reporter":"user-42"}"#;

    cases
        .add_account("test", "rev", Role::Reviewer, "a reviewer's password", 1)
        .await
        .unwrap();
    // A console account is refused here (its password cannot be tried through the API).
    for basic in [
        None,
        Some(("rev", "a reviewer's password")),
        Some(("platform", "wrong password here")),
        Some(("nobody", "x")),
    ] {
        let r = post_json(addr, "/api/v1/reports", basic, report).await;
        assert_eq!(r.status, 401, "{basic:?}: {}", r.text());
    }
    let creds = Some(("platform", "platform api password"));
    // A cross-site form cannot send JSON: anything else is refused before the credentials.
    let r = post_form_as_text(
        addr,
        "/api/v1/reports",
        ("platform", "platform api password"),
    )
    .await;
    assert_eq!(r, 415);
    for bad in [
        "not json",
        r#"{"clip_id":"clip-console","reason":"violent"}"#,
        r#"{"clip_id":"clip-console","reason":"violent","reporter":"u","extra":1}"#,
    ] {
        let r = post_json(addr, "/api/v1/reports", creds, bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = post_json(addr, "/api/v1/reports", creds, report).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (j["opened"].as_bool(), j["reports"].as_i64()),
        (Some(true), Some(1))
    );
    let r = post_json(
        addr,
        "/api/v1/reports",
        creds,
        r#"{"clip_id":"no-such-clip","reason":"x","reporter":"u"}"#,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());

    let r = post_json(
        addr,
        "/api/v1/appeals",
        creds,
        r#"{"clip_id":"clip-console","statement":"it is a film set","appellant":"owner-7"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["appealed_revision"], 0);
    assert!(j["rescan"].is_null(), "this console has no re-scan: {j}");
    let again = post_json(
        addr,
        "/api/v1/appeals",
        creds,
        r#"{"clip_id":"clip-console","statement":"again","appellant":"owner-7"}"#,
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    let queues = cases.queues(2).await.unwrap();
    let names: Vec<String> = queues
        .iter()
        .map(|q| format!("{}/{}={}", q.category, q.audience, q.open))
        .collect();
    assert_eq!(names, ["appeal/public_feed=1", "report/public_feed=1"]);

    // The reporter account cannot use the console.
    let form = http(addr, "GET", "/login", &[], None, None).await;
    let token = hidden(&form.text(), "csrf");
    let r = http(
        addr,
        "POST",
        "/login",
        &form.cookies(),
        Some(&[
            ("csrf", &token),
            ("id", "platform"),
            ("password", "platform api password"),
        ]),
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

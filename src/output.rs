//! Printing verdicts: a table for people, one JSON object per line with `--json`.

use std::io::Write;

use clipguard_schemas::Verdict;

/// Prints verdicts as they come.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    header_done: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            header_done: false,
        }
    }

    pub fn verdict(&mut self, v: &Verdict) {
        self.verdict_with(v, None);
    }

    /// A verdict joined with the clip's rendition record (`--json` only).
    pub fn verdict_with(&mut self, v: &Verdict, rendition: Option<&clipguard_schemas::Rendition>) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(
                out,
                "{}",
                clipguard_monitor::json::verdict_json_with(v, rendition)
            );
            return;
        }
        if !self.header_done {
            let _ = writeln!(
                out,
                "{:<8} {:<28} {:<30} RATIONALE",
                "DECISION", "SOURCE", "REASONS"
            );
            self.header_done = true;
        }
        let source = std::path::Path::new(&v.source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| v.source.clone());
        let reasons = if v.reasons.is_empty() {
            "-".to_string()
        } else {
            v.reasons.join(",")
        };
        let _ = writeln!(
            out,
            "{:<8} {:<28} {:<30} {}",
            v.decision().word(),
            ellipsize(&source, 28),
            ellipsize(&reasons, 30),
            v.rationale
        );
    }
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

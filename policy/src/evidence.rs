//! Evidence in words, as verdict rationales and prompt-check answers quote it.

use clipguard_schemas::Evidence;

/// One piece of evidence in words: where in the clip, and what.
pub fn evidence_phrase(e: &Evidence) -> String {
    let detail = shorten(&e.detail, 160);
    match e.kind.as_str() {
        "transcript" => format!("speech at {:.1}–{:.1} s, {detail}", e.start_s, e.end_s),
        "frame" | "face" => format!("{} at {:.1} s, {detail}", e.kind, e.start_s),
        // An uploaded image of an input check, by its position in the request.
        "image" => format!("image {}, {detail}", e.start_s as usize),
        "prompt" => format!("the prompt, {detail}"),
        "scene_description" => format!("the scene description, {detail}"),
        "hash" => format!("hash match at {:.1} s, {detail}", e.start_s),
        _ => detail,
    }
}

/// `s` cut to `max_chars` characters, with `…` when cut.
pub fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    out.push('…');
    out
}

//! Attribute cues: the words that make sexual content a minor's (`minor`) or a real person's
//! (`person`). A composed category (see [`super::policy::Compose`]) is its base category's
//! score where its attribute holds; a cue found here makes the attribute hold, with the words
//! that did it as evidence.

use super::policy::AttributeSpec;
use super::words::{Term, Word, compile, find_terms_exact, words};

/// Number words a stated age may be written with.
const NUMBER_WORDS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

/// Capitalised words that start no person's name (places, holidays, sites, the words prompts
/// open with), for the full-name cue.
const NOT_NAMES: &[&str] = &[
    "A",
    "An",
    "The",
    "And",
    "Or",
    "But",
    "In",
    "On",
    "At",
    "Of",
    "For",
    "With",
    "To",
    "From",
    "By",
    "Make",
    "Generate",
    "Create",
    "Show",
    "Render",
    "Film",
    "Video",
    "Scene",
    "Clip",
    "Cinematic",
    "Close",
    "Closeup",
    "Two",
    "Three",
    "Hot",
    "Sexy",
    "Nude",
    "Naked",
    "Explicit",
    "New",
    "Los",
    "Las",
    "San",
    "Santa",
    "Saint",
    "St",
    "North",
    "South",
    "East",
    "West",
    "United",
    "Christmas",
    "Halloween",
    "Valentine",
    "Easter",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "OnlyFans",
    "Pornhub",
    "Instagram",
    "Facebook",
    "TikTok",
    "YouTube",
    "Twitter",
    "Snapchat",
    "Reddit",
    "AI",
    "POV",
    "HD",
    "NSFW",
    "OK",
    "Okay",
    "So",
    "Guys",
    "Hey",
    "Hi",
    "I",
    "I'm",
    "My",
    "We",
    "You",
    "He",
    "She",
    "They",
    "It",
    "This",
    "That",
    "Then",
    "Now",
    "Please",
];

/// One attribute's cue detector.
#[derive(Debug, Clone)]
pub(super) struct Attribute {
    pub(super) name: String,
    terms: Vec<Term>,
    ages_under: Option<u32>,
    grades_up_to: Option<u32>,
    full_names: bool,
    named_roles: Vec<Term>,
    weak_terms: Vec<Term>,
    against_terms: Vec<Term>,
    against_ages_from: Option<u32>,
}

/// What a text says about an attribute.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Finding {
    /// A cue: the attribute holds.
    Cue(Cue),
    /// No cue, and words that say it does not hold.
    Against(Cue),
    /// Neither: the attribute head decides.
    Unknown,
}

/// The attribute's value on the raw scale: 1 for a cue; for words against it, the attribute
/// head only when it is all but certain (≥ [`AGAINST_OVERRULED_AT`]), else 0; the head otherwise.
pub(super) fn value(f: &Finding, head: f32) -> f32 {
    match f {
        Finding::Cue(_) => 1.0,
        Finding::Against(_) if head >= AGAINST_OVERRULED_AT => head,
        Finding::Against(_) => 0.0,
        Finding::Unknown => head,
    }
}

/// An attribute head this sure is not overruled by a word against the attribute ("my
/// husband's stepdaughter" names no minor cue, and "husband" is an adult).
pub(super) const AGAINST_OVERRULED_AT: f32 = 0.9;

/// A cue found in a text: what it is and its byte span there.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cue {
    pub(super) what: String,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// A word of the raw text (not normalised) and its byte span.
struct Raw<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    /// What follows the word up to the next one (spaces, punctuation).
    after: &'a str,
    /// Whether a sentence ends between the previous word and this one (or it is the first).
    sentence_start: bool,
}

fn raw_words<'a>(text: &'a str) -> Vec<Raw<'a>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut boundary = true;
    let push = |out: &mut Vec<Raw<'a>>, s: usize, e: usize, boundary: &mut bool| {
        out.push(Raw {
            text: &text[s..e],
            start: s,
            end: e,
            after: "",
            sentence_start: *boundary,
        });
        *boundary = false;
    };
    for (i, c) in text.char_indices() {
        let in_word = c.is_alphanumeric() || c == '\'';
        match (in_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push(&mut out, s, i, &mut boundary);
                start = None;
            }
            _ => {}
        }
        if !in_word && matches!(c, '.' | '!' | '?' | ':' | ';' | '"' | '\n' | '(' | '[') {
            boundary = true;
        }
    }
    if let Some(s) = start {
        push(&mut out, s, text.len(), &mut boundary);
    }
    for i in 0..out.len() {
        let to = out.get(i + 1).map_or(text.len(), |n| n.start);
        out[i].after = &text[out[i].end..to];
    }
    out
}

/// The number a word states, if any: digits (`15`, leading digits of `15yo`) or a number word.
fn number(word: &str) -> Option<(u32, &str)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && digits <= 3 {
        return word[..digits].parse().ok().map(|n| (n, &word[digits..]));
    }
    let lower = word.to_lowercase();
    NUMBER_WORDS
        .iter()
        .position(|w| *w == lower)
        .map(|n| (n as u32, ""))
}

/// A text split once into the normalised words terms match against and the raw words ages,
/// grades and names are read from.
struct Parsed<'a> {
    words: Vec<Word>,
    raw: Vec<Raw<'a>>,
}

impl<'a> Parsed<'a> {
    fn new(text: &'a str) -> Self {
        Parsed {
            words: words(text),
            raw: raw_words(text),
        }
    }
}

/// The terms found in the words, matched exactly, as cues quoting the term.
fn term_cues(terms: &[Term], ws: &[Word]) -> Vec<Cue> {
    find_terms_exact(terms, ws)
        .into_iter()
        .map(|(t, a, b)| Cue {
            what: format!("\u{201c}{}\u{201d}", t.original),
            start: a,
            end: b,
        })
        .collect()
}

/// A name (capitalised, not a word prompts open with) or a word for a person, which an age in
/// brackets may follow.
fn is_person_word(w: &str) -> bool {
    (capitalised(w) && !NOT_NAMES.contains(&w) && !matches!(w, "Step" | "Part" | "Day" | "Round"))
        || matches!(
            w.to_lowercase().as_str(),
            "baby"
                | "babe"
                | "girl"
                | "boy"
                | "woman"
                | "man"
                | "guy"
                | "lady"
                | "wife"
                | "husband"
                | "girlfriend"
                | "boyfriend"
                | "partner"
                | "daughter"
                | "son"
                | "sister"
                | "brother"
                | "student"
                | "model"
                | "teen"
                | "kid"
                | "child"
                | "mom"
                | "dad"
                | "daddy"
                | "me"
                | "she"
                | "he"
                | "her"
                | "him"
                | "friend"
                | "neighbour"
                | "neighbor"
                | "stepdaughter"
                | "stepson"
                | "niece"
                | "nephew"
        )
}

/// Words that make a number an age on their own (`15yo`).
fn is_age_suffix(w: &str) -> bool {
    matches!(w.to_lowercase().as_str(), "yo" | "yrold" | "yearold")
}

/// Words that make a number an age when "old" follows (`15 year old`, not `15 years of
/// marriage`).
fn is_year_word(w: &str) -> bool {
    matches!(w.to_lowercase().as_str(), "year" | "years" | "yr" | "yrs")
}

fn capitalised(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(char::is_uppercase)
        && w.chars().count() >= 2
        && cs.all(|c| c.is_lowercase() || c == '\'')
}

/// A stated age (`30 year old`, `30yo`, `aged 30`) in `ws` for which `keep` holds, as a span.
fn stated_age(ws: &[Raw<'_>], keep: impl Fn(u32) -> bool) -> Vec<(u32, usize, usize)> {
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if let Some((n, rest)) = number(w.text) {
            let old_after = |j: usize| {
                ws.get(j)
                    .filter(|x| x.text.eq_ignore_ascii_case("old"))
                    .map(|x| x.end)
            };
            let unit = if rest.is_empty() && w.after.starts_with('+') {
                // "all 21+"
                Some(w.end + 1)
            } else if rest.is_empty() {
                match ws.get(i + 1) {
                    Some(x) if is_age_suffix(x.text) => Some(x.end),
                    // "12 y/o"
                    Some(x)
                        if x.text.eq_ignore_ascii_case("y")
                            && ws
                                .get(i + 2)
                                .is_some_and(|o| o.text.eq_ignore_ascii_case("o")) =>
                    {
                        ws.get(i + 2).map(|o| o.end)
                    }
                    Some(x) if is_year_word(x.text) => old_after(i + 2),
                    _ => None,
                }
            } else if is_age_suffix(rest) {
                Some(w.end)
            } else if is_year_word(rest) {
                old_after(i + 1)
            } else if rest.eq_ignore_ascii_case("s") && n >= 20 && n % 10 == 0 {
                // "in her 30s"
                Some(w.end)
            } else {
                None
            };
            // "Mara (24)", "sugar baby (23F)": a number in brackets right after a name or a
            // word for a person (not a list's "(1)", "step (2)", "repeat (25) times").
            let bracketed = i > 0
                && matches!(ws[i - 1].after, "(" | " (")
                && is_person_word(ws[i - 1].text)
                && w.after.starts_with(')')
                && matches!(rest.to_ascii_lowercase().as_str(), "" | "f" | "m");
            let unit = unit.or(bracketed.then_some(w.end));
            if let Some(end) = unit
                && keep(n)
            {
                out.push((n, w.start, end));
                continue;
            }
        }
        if matches!(w.text.to_lowercase().as_str(), "aged" | "age")
            && let Some(x) = ws.get(i + 1)
            && let Some((n, "")) = number(x.text)
            && keep(n)
        {
            out.push((n, w.start, x.end));
            continue;
        }
        // "she's 14", "who is 14", "looks about twelve", "barely 15", "turns 30", "both 21": a
        // bare number after words that state someone's age, unless a unit follows ("looks 2
        // feet tall").
        let lower = w.text.to_lowercase();
        let states_age = matches!(
            lower.as_str(),
            "she's"
                | "he's"
                | "who's"
                | "looks"
                | "look"
                | "looking"
                | "barely"
                | "turned"
                | "turning"
                | "turns"
                | "both"
        ) || (lower == "is"
            && i > 0
            && matches!(ws[i - 1].text.to_lowercase().as_str(), "she" | "he" | "who"));
        if states_age {
            let mut j = i + 1;
            if ws.get(j).is_some_and(|x| {
                matches!(x.text.to_lowercase().as_str(), "about" | "around" | "only")
            }) {
                j += 1;
            }
            // Not a rating or a fraction ("she's 10/10"), not a count of something.
            if let Some(x) = ws.get(j)
                && let Some((n, "")) = number(x.text)
                && keep(n)
                && !x.after.contains('/')
                && !ws.get(j + 1).is_some_and(|u| {
                    UNITS.contains(&u.text.to_lowercase().as_str()) || number(u.text).is_some()
                })
                // "both 21, …", not "both 2 cars": after "both" the number ends a phrase.
                && (lower != "both"
                    || ws.get(j + 1).is_none()
                    || x.after.trim().starts_with(|c: char| c.is_ascii_punctuation())
                    || ws.get(j + 1).is_some_and(|u| u.text.eq_ignore_ascii_case("and")))
            {
                out.push((n, w.start, x.end));
            }
        }
    }
    out
}

/// Words after a number that make it something other than an age.
const UNITS: &[&str] = &[
    "feet", "foot", "ft", "inch", "inches", "cm", "meters", "metres", "m", "kg", "kilos", "pounds",
    "lbs", "minutes", "mins", "min", "seconds", "secs", "hours", "hrs", "days", "weeks", "months",
    "percent", "times", "dollars", "euros", "points", "goals", "stories", "floors", "people", "of",
];

impl Attribute {
    pub(super) fn new(name: &str, spec: &AttributeSpec) -> Attribute {
        Attribute {
            name: name.to_string(),
            terms: compile(&spec.terms),
            ages_under: spec.ages_under,
            grades_up_to: spec.grades_up_to,
            full_names: spec.full_names,
            named_roles: compile(&spec.named_roles),
            weak_terms: compile(&spec.weak_terms),
            against_terms: compile(&spec.against_terms),
            against_ages_from: spec.against_ages_from,
        }
    }

    #[cfg(test)]
    fn cues(&self, text: &str) -> Vec<Cue> {
        self.cues_in(&Parsed::new(text))
    }

    #[cfg(test)]
    fn weak_cues(&self, text: &str) -> Vec<Cue> {
        self.weak_cues_in(&Parsed::new(text))
    }

    #[cfg(test)]
    fn against(&self, text: &str) -> Option<Cue> {
        self.against_in(&Parsed::new(text))
    }

    /// What `text` says about the attribute: a cue first, then words against it, then a weak
    /// cue (one that counts only where nothing says otherwise).
    pub(super) fn find(&self, text: &str) -> Finding {
        let p = Parsed::new(text);
        if let Some(c) = self.cues_in(&p).into_iter().next() {
            return Finding::Cue(c);
        }
        if let Some(c) = self.against_in(&p) {
            return Finding::Against(c);
        }
        match self.weak_cues_in(&p).into_iter().next() {
            Some(c) => Finding::Cue(c),
            None => Finding::Unknown,
        }
    }

    /// Cues that count only where nothing says otherwise: the weak terms and full names
    /// (`Emma Watson`; also `Victoria's Secret`, so a "fictional" in the text outweighs it).
    fn weak_cues_in(&self, p: &Parsed<'_>) -> Vec<Cue> {
        let mut out = term_cues(&self.weak_terms, &p.words);
        let ws = &p.raw;
        if self.full_names {
            // Two or more capitalised words in a row, not opening a sentence: a person's name
            // ("Scarlett Johansson"), unless the first is a known non-name.
            let mut i = 0;
            while i < ws.len() {
                let mut j = i;
                while j < ws.len() && capitalised(ws[j].text) && !NOT_NAMES.contains(&ws[j].text) {
                    j += 1;
                }
                // A run opening a sentence counts from its second word when three or more
                // long ("Topless Taylor Swift").
                let from = if ws.get(i).is_some_and(|w| w.sentence_start) {
                    i + 1
                } else {
                    i
                };
                if j >= from + 2 {
                    out.push(Cue {
                        what: "a full name".to_string(),
                        start: ws[from].start,
                        end: ws[j - 1].end,
                    });
                }
                i = j.max(i + 1);
            }
        }
        out
    }

    /// What in `text` says the attribute does not hold (an adult's age, "adults"), if anything:
    /// consulted only when [`Attribute::cues_in`] found nothing.
    fn against_in(&self, p: &Parsed<'_>) -> Option<Cue> {
        if let Some(c) = term_cues(&self.against_terms, &p.words).into_iter().next() {
            return Some(c);
        }
        let from = self.against_ages_from?;
        stated_age(&p.raw, |n| n >= from && n < 130)
            .into_iter()
            .next()
            .map(|(_, a, b)| Cue {
                what: format!("an age of {from} or more"),
                start: a,
                end: b,
            })
    }

    /// Every cue of this attribute in `text`, in the order of the checks (terms, ages, grades,
    /// names).
    fn cues_in(&self, p: &Parsed<'_>) -> Vec<Cue> {
        let mut out = term_cues(&self.terms, &p.words);
        let ws = &p.raw;
        if let Some(limit) = self.ages_under {
            // "15 year old", "15-year-old", "15 years", "15yo", "15 y/o", "fifteen yrs", "aged 15".
            for (_, a, b) in stated_age(ws, |n| n < limit) {
                out.push(Cue {
                    what: format!("an age under {limit}"),
                    start: a,
                    end: b,
                });
            }
        }
        if let Some(top) = self.grades_up_to {
            for (i, w) in ws.iter().enumerate() {
                // "8th grade", "8th grader", "grade 8", "third grade".
                let lower = w.text.to_lowercase();
                if matches!(lower.as_str(), "grade" | "grader" | "graders")
                    && let Some(prev) = i.checked_sub(1).map(|p| &ws[p])
                {
                    let p = prev.text.to_lowercase();
                    let ordinal = p
                        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                        .parse::<u32>()
                        .ok()
                        .or_else(|| ORDINALS.iter().position(|o| *o == p).map(|n| n as u32 + 1));
                    let teacher = ws.get(i + 1).is_some_and(|t| {
                        matches!(t.text.to_lowercase().as_str(), "teacher" | "teachers")
                    });
                    if ordinal.is_some_and(|n| n <= top) && !teacher {
                        out.push(Cue {
                            what: format!("a school grade up to {top}"),
                            start: prev.start,
                            end: w.end,
                        });
                        continue;
                    }
                }
                if lower == "grade"
                    && let Some(next) = ws.get(i + 1)
                    && let Some((n, "")) = number(next.text)
                    && n <= top
                {
                    out.push(Cue {
                        what: format!("a school grade up to {top}"),
                        start: w.start,
                        end: next.end,
                    });
                }
            }
        }
        out.extend(self.named_roles_in(p));
        out
    }

    /// A role word followed by a name (`classmate Tyler`, `actress Emma Stone`): one person.
    fn named_roles_in(&self, p: &Parsed<'_>) -> Vec<Cue> {
        let ws = &p.raw;
        find_terms_exact(&self.named_roles, &p.words)
            .into_iter()
            .filter_map(|(t, a, b)| {
                let next = ws.iter().find(|w| w.start >= b)?;
                let role_end = ws.iter().rev().find(|w| w.end <= b)?;
                let named = capitalised(next.text)
                    && !NOT_NAMES.contains(&next.text)
                    && !next.sentence_start
                    && role_end.after.trim().is_empty();
                named.then(|| Cue {
                    what: format!("\u{201c}{}\u{201d} and a name", t.original),
                    start: a,
                    end: next.end,
                })
            })
            .collect()
    }
}

const ORDINALS: [&str; 12] = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn minor() -> Attribute {
        Attribute::new(
            "minor",
            &AttributeSpec {
                terms: vec!["child".into(), "little girl".into(), "middle school".into()],
                ages_under: Some(18),
                grades_up_to: Some(12),
                full_names: false,
                weak_terms: vec!["baby".into()],
                against_terms: vec!["adults".into()],
                against_ages_from: Some(18),
                ..AttributeSpec::default()
            },
        )
    }

    /// The shipped policy's minor attribute: "baby" alone is a pet name as often as an infant.
    #[test]
    fn the_shipped_minor_cues_tell_an_infant_from_a_pet_name() {
        let p = crate::TextPolicy::parse(crate::DEFAULT_POLICY, "shipped").unwrap();
        let m = Attribute::new("minor", &p.attributes["minor"]);
        assert_eq!(m.find("come here baby, take it all off"), Finding::Unknown);
        assert!(matches!(
            m.find("my baby girl turns 30, film her striptease"),
            Finding::Against(_)
        ));
        assert!(matches!(
            m.find("sugar baby and her date, explicit"),
            Finding::Against(_)
        ));
        assert!(matches!(m.find("a baby in the bath"), Finding::Cue(_)));
        assert!(matches!(
            m.find("a woman in her forties"),
            Finding::Against(_)
        ));
    }

    #[test]
    fn a_weak_cue_counts_only_where_nothing_says_otherwise() {
        let m = minor();
        assert!(matches!(
            m.find("a baby in a sexual video"),
            Finding::Cue(_)
        ));
        assert!(matches!(
            m.find("two adults in bed, she calls him baby"),
            Finding::Against(_)
        ));
        // A strong cue wins over words against it.
        assert!(matches!(
            m.find("adults and a 12 year old"),
            Finding::Cue(c) if c.what.contains("age under 18")
        ));
        assert_eq!(m.find("a couple in bed"), Finding::Unknown);
    }

    #[test]
    fn an_adult_age_or_word_says_the_attribute_does_not_hold() {
        let m = minor();
        let against = |t: &str| m.against(t).map(|c| t[c.start..c.end].to_string());
        assert_eq!(
            against("a 30 year old woman").as_deref(),
            Some("30 year old")
        );
        assert_eq!(against("two consenting adults").as_deref(), Some("adults"));
        assert_eq!(against("she is 18yo").as_deref(), Some("18yo"));
        assert_eq!(against("sorority sisters, all 21+").as_deref(), Some("21+"));
        assert_eq!(
            against("Boy and girl, both 21, in bed").as_deref(),
            Some("both 21")
        );
        assert_eq!(
            against("my girl turns 30 this week").as_deref(),
            Some("turns 30")
        );
        assert_eq!(
            against("sugar baby (23) and her date").as_deref(),
            Some("23")
        );
        assert_eq!(against("Mara (24F) undresses").as_deref(), Some("24F"));
        assert_eq!(against("a woman in her 30s").as_deref(), Some("30s"));
        // A list's numbers are not ages.
        assert_eq!(against("Steps: (1) undress (25) times"), None);
        assert_eq!(against("Step (20) of the recipe"), None);
        assert_eq!(against("a girl in a bikini"), None);
    }

    fn spans(a: &Attribute, text: &str) -> Vec<String> {
        a.cues(text)
            .into_iter()
            .chain(a.weak_cues(text))
            .map(|c| text[c.start..c.end].to_string())
            .collect()
    }

    #[test]
    fn ages_under_the_limit_in_every_spelling_are_minor_cues_and_adult_ages_are_not() {
        let m = minor();
        for (text, want) in [
            ("a 15 year old on a bed", "15 year old"),
            ("a 15-year-old", "15-year-old"),
            ("she is 13yo", "13yo"),
            ("a fifteen year old", "fifteen year old"),
            ("boy, 12 y/o", "12 y/o"),
            ("aged 16", "aged 16"),
            ("a girl who looks about twelve", "looks about twelve"),
            ("she's 14 and", "she's 14"),
            ("a boy who is 13", "is 13"),
            ("an 8th grade student", "8th grade"),
            ("a fifth grader", "fifth grader"),
            ("in grade 7", "grade 7"),
            ("a Little Girl", "Little Girl"),
            ("Middle-school", "Middle-school"),
            ("Lily (14) in her room", "14"),
            ("she turns 15 tomorrow", "turns 15"),
        ] {
            assert_eq!(spans(&m, text), [want], "{text}");
        }
        for text in [
            "a 25 year old woman",
            "two adults aged 30",
            "she is 18 years old",
            "a 19yo college student",
            "grade A beef",
            "a 2 hour video",
            "a childish joke",
            "she looks 2 feet tall",
            "he's 30",
            "dating 2 years",
            "after 10 years of marriage",
            "she looks like 2 girls",
            "she's 10/10",
            "a first grade teacher",
            "step (2) of the recipe",
            "both 2 cars",
        ] {
            assert!(spans(&m, text).is_empty(), "{text}: {:?}", spans(&m, text));
        }
    }

    /// A role is nobody in particular until a name follows it: "two coworkers in their
    /// forties" says no real person, "my college classmate Tyler" does.
    #[test]
    fn a_role_word_names_a_person_only_with_a_name() {
        let p = Attribute::new(
            "person",
            &AttributeSpec {
                named_roles: vec!["classmate".into(), "porn star".into(), "coworkers".into()],
                ..AttributeSpec::default()
            },
        );
        for (text, cue) in [
            (
                "make my college classmate Tyler naked",
                Some("classmate Tyler"),
            ),
            (
                "the porn star Lana Rhodes in a scene",
                Some("porn star Lana"),
            ),
            ("two coworkers in their forties hook up", None),
            ("Scene: porn star in his thirties", None),
            ("a classmate. Then they kiss", None),
            ("my classmate, Tyler, dancing", None),
            ("my classmate The end", None),
        ] {
            let found: Vec<String> = p
                .cues(text)
                .iter()
                .map(|c| text[c.start..c.end].to_string())
                .collect();
            assert_eq!(
                found,
                cue.into_iter().map(String::from).collect::<Vec<_>>(),
                "{text}"
            );
        }
    }

    #[test]
    fn full_names_are_weak_person_cues_but_sentence_openers_and_places_are_not() {
        let p = Attribute::new(
            "person",
            &AttributeSpec {
                terms: vec!["my coworker".into()],
                ages_under: None,
                grades_up_to: None,
                full_names: true,
                against_terms: vec!["fictional".into()],
                ..AttributeSpec::default()
            },
        );
        assert_eq!(spans(&p, "Topless Taylor Swift dancing"), ["Taylor Swift"]);
        assert!(matches!(
            p.find("a fictional Jane Doe in a sex scene"),
            Finding::Against(_)
        ));
        assert!(matches!(p.find("make Jane Doe naked"), Finding::Cue(_)));
        // Terms match exactly: no one-letter typos for attributes.
        assert!(spans(&p, "nudes of my coworkers").is_empty());
        assert_eq!(
            spans(&p, "make Scarlett Johansson naked"),
            ["Scarlett Johansson"]
        );
        assert_eq!(spans(&p, "nudes of my coworker"), ["my coworker"]);
        assert!(spans(&p, "Hot Blonde undressing").is_empty());
        assert!(spans(&p, "a sex scene in a New York hotel").is_empty());
        assert!(spans(&p, "Scene: Two adults kissing").is_empty());
        assert!(spans(&p, "a woman named Lena undressing").is_empty());
    }
}

//! Shell-style patterns (`session.*`, `T100?W`) and config values that may
//! be one string or a list of strings.

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;

/// A pattern in which `*` stands for any run of characters (also none) and
/// `?` for exactly one; every other character stands for itself. Matching is
/// case-sensitive and covers the whole text: `session.*` matches
/// `session.start` but not `app.session.start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    shape: Shape,
}

/// Most patterns are a plain name or `prefix.*`; those skip the general matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Exact,
    Prefix(String),
    General(Vec<char>),
}

impl Glob {
    /// Compiles a pattern; every string is a valid pattern.
    pub fn new(pattern: &str) -> Glob {
        let shape = match pattern.find(['*', '?']) {
            None => Shape::Exact,
            Some(at) if at == pattern.len() - 1 && pattern.ends_with('*') => Shape::Prefix(pattern[..at].to_owned()),
            Some(_) => Shape::General(pattern.chars().collect()),
        };
        Glob { pattern: pattern.to_owned(), shape }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &self.shape {
            Shape::Exact => text == self.pattern,
            Shape::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Shape::General(pattern) => wildcard_match(pattern, text),
        }
    }
}

/// Greedy matching that, on a mismatch, goes back to the last `*` and lets
/// it take one more character: linear in practice, at worst the product of
/// the two lengths, never exponential.
fn wildcard_match(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A config value written as one string or as a list of strings
/// (`sinks = "security"` or `sinks = ["security", "default"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strings, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Strings, E> {
                Ok(Strings(vec![text.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(Strings(items))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

/// One glob or a list of globs, from config; matches when any of them does.
/// An empty list is refused, since it could never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globs(Vec<Glob>);

impl Globs {
    /// Whether any of the patterns matches `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|glob| glob.matches(text))
    }

    /// Builds from patterns; `None` when there are none.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> Option<Globs> {
        let globs: Vec<Glob> = patterns.into_iter().map(|p| Glob::new(p.as_ref())).collect();
        (!globs.is_empty()).then_some(Globs(globs))
    }
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Globs, D::Error> {
        let Strings(patterns) = Strings::deserialize(deserializer)?;
        Globs::new(&patterns).ok_or_else(|| de::Error::custom("is an empty list; give at least one pattern"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        let cases = [
            ("session.*", "session.start", true),
            ("session.*", "session.", true),
            ("session.*", "app.session.start", false),
            ("*.session.*", "app.session.start", true),
            ("db.session.*.statements.*", "db.session.mysql.statements.execute", true),
            ("db.session.*.statements.*", "db.session.query", false),
            ("T100?W", "T1000W", true),
            ("T100?W", "T1000I", false),
            ("*W", "T1011W", true),
            ("*", "", true),
            ("a*b*c", "abxbxc", true),
            ("a*b*c", "abxbx", false),
            ("user.login", "user.login", true),
            ("user.login", "user.logins", false),
            ("é?", "éü", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(Glob::new(pattern).matches(text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn one_string_or_a_list() {
        let one: Globs = serde_json::from_str(r#""session.*""#).expect("one");
        assert!(one.matches("session.end"));
        let many: Globs = serde_json::from_str(r#"["exec","scp"]"#).expect("many");
        assert!(many.matches("scp") && !many.matches("sftp"));
        let empty = serde_json::from_str::<Globs>("[]").expect_err("empty");
        assert_eq!(empty.to_string(), "is an empty list; give at least one pattern");
        let number = serde_json::from_str::<Globs>("3").expect_err("number");
        assert!(number.to_string().starts_with("invalid type: integer `3`, expected a string or a list of strings"), "{number}");
    }
}

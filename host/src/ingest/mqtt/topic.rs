//! Topic patterns with named one-level wildcards: `shellies/{device}/status/em:0` is the
//! MQTT filter `shellies/+/status/em:0`, and a topic it matches gives `device` its level.
//! Pure: checked when the configuration is, matched for every message.

use std::fmt;

/// Most levels in a pattern (MQTT allows more; no device needs them).
pub const TOPIC_LEVELS_MAX: usize = 32;

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    Named(String),
}

/// A checked topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// Empty, or a level is empty.
    #[error("topic pattern {0:?} has an empty level")]
    EmptyLevel(String),
    /// `+` or `#` written out: wildcards are named (`{device}`) so the id can use them.
    #[error("topic pattern {0:?}: write a wildcard as {{name}}, not + or #")]
    RawWildcard(String),
    /// A level that is partly a wildcard (`dev{n}`), or a malformed name.
    #[error("topic pattern {0:?}: a wildcard is a whole level, {{name}}")]
    PartialWildcard(String),
    /// The same name twice.
    #[error("topic pattern {0:?} names the wildcard {1:?} twice")]
    DuplicateName(String, String),
    /// More than [`TOPIC_LEVELS_MAX`] levels.
    #[error("topic pattern {0:?} has more than {TOPIC_LEVELS_MAX} levels")]
    TooDeep(String),
}

impl TopicPattern {
    /// Parses `pattern`.
    pub fn parse(pattern: &str) -> Result<TopicPattern, PatternError> {
        let split: Vec<&str> = pattern.split('/').collect();
        if split.len() > TOPIC_LEVELS_MAX {
            return Err(PatternError::TooDeep(pattern.into()));
        }
        let mut levels = Vec::with_capacity(split.len());
        for level in split {
            if level.is_empty() {
                return Err(PatternError::EmptyLevel(pattern.into()));
            }
            if level.contains(['+', '#']) {
                return Err(PatternError::RawWildcard(pattern.into()));
            }
            let named = level
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .filter(|name| !name.is_empty() && !name.contains(['{', '}']));
            match named {
                Some(name) => {
                    if levels.contains(&Level::Named(name.into())) {
                        return Err(PatternError::DuplicateName(pattern.into(), name.into()));
                    }
                    levels.push(Level::Named(name.into()));
                }
                None if level.contains(['{', '}']) => {
                    return Err(PatternError::PartialWildcard(pattern.into()))
                }
                None => levels.push(Level::Exact(level.into())),
            }
        }
        Ok(TopicPattern { levels })
    }

    /// The MQTT subscription filter (`+` for each named level).
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Exact(text) => text.as_str(),
                Level::Named(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The names of its wildcards.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Named(name) => Some(name.as_str()),
            Level::Exact(_) => None,
        })
    }

    /// The wildcards' values if `topic` matches, `None` otherwise.
    pub fn matches<'t>(&self, topic: &'t str) -> Option<Captures<'_, 't>> {
        let mut captures = Captures::default();
        let mut levels = topic.split('/');
        for level in &self.levels {
            let got = levels.next()?;
            match level {
                Level::Exact(text) if text == got => {}
                Level::Exact(_) => return None,
                Level::Named(name) if !got.is_empty() => captures.pairs.push((name, got)),
                Level::Named(_) => return None,
            }
        }
        levels.next().is_none().then_some(captures)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match level {
                Level::Exact(text) => f.write_str(text)?,
                Level::Named(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// The values of a pattern's wildcards in one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures<'p, 't> {
    pairs: Vec<(&'p str, &'t str)>,
}

impl<'t> Captures<'_, 't> {
    /// The value of the wildcard `name`.
    pub fn get(&self, name: &str) -> Option<&'t str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_wildcards_become_plus_and_capture_their_level() {
        let p = TopicPattern::parse("shellies/{device}/status/em:0").unwrap();
        assert_eq!(p.filter(), "shellies/+/status/em:0");
        assert_eq!(p.to_string(), "shellies/{device}/status/em:0");
        let c = p.matches("shellies/pro3em-1/status/em:0").unwrap();
        assert_eq!(c.get("device"), Some("pro3em-1"));
        assert_eq!(c.get("other"), None);
        assert!(p.matches("shellies/pro3em-1/status/em:1").is_none());
        assert!(p.matches("shellies/pro3em-1/status/em:0/x").is_none());
        assert!(p.matches("shellies/pro3em-1/status").is_none());
        assert!(p.matches("shellies//status/em:0").is_none());
    }

    #[test]
    fn malformed_patterns_are_refused_with_their_reason() {
        assert!(matches!(
            TopicPattern::parse("a//b"),
            Err(PatternError::EmptyLevel(_))
        ));
        assert!(matches!(
            TopicPattern::parse(""),
            Err(PatternError::EmptyLevel(_))
        ));
        assert!(matches!(
            TopicPattern::parse("a/+/b"),
            Err(PatternError::RawWildcard(_))
        ));
        assert!(matches!(
            TopicPattern::parse("a/#"),
            Err(PatternError::RawWildcard(_))
        ));
        assert!(matches!(
            TopicPattern::parse("a/d{n}"),
            Err(PatternError::PartialWildcard(_))
        ));
        assert!(matches!(
            TopicPattern::parse("a/{}"),
            Err(PatternError::PartialWildcard(_))
        ));
        assert!(matches!(
            TopicPattern::parse("{a}/{a}"),
            Err(PatternError::DuplicateName(_, _))
        ));
        let deep = vec!["x"; TOPIC_LEVELS_MAX + 1].join("/");
        assert!(matches!(
            TopicPattern::parse(&deep),
            Err(PatternError::TooDeep(_))
        ));
    }
}

//! Id templates: text with `{name}` holes, filled from a point's tags (line protocol) or a
//! topic's named wildcards (MQTT). Parsed once when the configuration is checked.

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Hole(String),
}

/// A checked template: `"site-{device}"` is the text `site-` and the hole `device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `None` if a `{` is unclosed, a `}` unopened, a hole empty or nested,
    /// or the template empty.
    pub fn parse(text: &str) -> Option<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].into()));
            }
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || name.contains('{') || rest[..open].contains('}') {
                return None;
            }
            parts.push(Part::Hole(name.into()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.into()));
        }
        (!parts.is_empty()).then_some(Template { parts })
    }

    /// The template of one hole, `{name}`.
    pub fn hole(name: &str) -> Template {
        Template {
            parts: vec![Part::Hole(name.into())],
        }
    }

    /// The names of its holes.
    pub fn holes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with every hole filled by `value`; `Err(name)` names the first hole
    /// `value` has nothing for.
    pub fn fill<'v>(&self, value: impl Fn(&str) -> Option<&'v str>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Hole(name) => out.push_str(value(name).ok_or_else(|| name.clone())?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_filled_and_malformed_templates_refused() {
        let t = Template::parse("site-{device}-{phase}").unwrap();
        assert_eq!(t.holes().collect::<Vec<_>>(), ["device", "phase"]);
        let filled = t.fill(|name| match name {
            "device" => Some("pv1"),
            "phase" => Some("a"),
            _ => None,
        });
        assert_eq!(filled.as_deref(), Ok("site-pv1-a"));
        assert_eq!(t.fill(|_| None), Err("device".to_string()));
        for bad in ["", "{", "}", "a{}", "a{b", "a}b{c}", "{a{b}}"] {
            assert_eq!(Template::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Template::parse("plain").unwrap().fill(|_| None).as_deref(),
            Ok("plain")
        );
    }
}

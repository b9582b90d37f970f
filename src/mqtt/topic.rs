//! Topics: the filters a source subscribes with, and the templates a
//! publisher fills in per message.

use crate::config::did_you_mean;
use crate::event::Value;
use crate::event::template::Template;
use serde::Deserialize;

/// A `topics:` option: at least one valid subscription filter.
#[derive(Clone, Debug)]
pub struct Filters(pub Vec<String>);

impl<'de> Deserialize<'de> for Filters {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let filters = Vec::<String>::deserialize(d)?;
        if filters.is_empty() {
            return Err(serde::de::Error::custom(
                "`topics` must name at least one topic filter",
            ));
        }
        for filter in &filters {
            check_filter(filter).map_err(serde::de::Error::custom)?;
        }
        Ok(Filters(filters))
    }
}

/// A topic with placeholders (`alerts/{rule}/{key}`), checked once and
/// filled in per message.
#[derive(Clone, Debug)]
pub struct TopicTemplate(Template);

impl TopicTemplate {
    /// Parses `text`, which may use the placeholders in `vars`.
    pub fn parse(text: &str, vars: &[&str]) -> Result<TopicTemplate, String> {
        let template = Template::parse(text)?;
        if let Some(unknown) = template.vars().find(|v| !vars.contains(v)) {
            let hint = match did_you_mean(unknown, vars.iter().copied()) {
                hint if hint.is_empty() => format!(", expected one of: {}", vars.join(", ")),
                hint => hint,
            };
            return Err(format!(
                "unknown placeholder `{{{unknown}}}` in topic{hint}"
            ));
        }
        let sample = template.render(|_| Some(Value::Str("x".into())));
        if sample.is_empty() || sample.contains(['+', '#']) {
            return Err(format!(
                "`{text}` is not a topic to publish to: it must not be empty or contain `+` or `#`"
            ));
        }
        Ok(TopicTemplate(template))
    }

    /// The topic for one message. Values cannot add levels or wildcards:
    /// `/`, `+` and `#` in them become `_`.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
        self.0.render(|var| {
            let value = lookup(var)?.replace(['/', '+', '#'], "_");
            Some(Value::Str(value.into()))
        })
    }
}

/// Checks a subscription filter: `+` and `#` stand for whole levels, `#`
/// only last; `$share/GROUP/FILTER` shares a subscription between clients.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let plain = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, plain)) if !group.is_empty() && !group.contains(['+', '#']) => plain,
            _ => return Err(format!("`{filter}`: expected $share/GROUP/FILTER")),
        },
        None => filter,
    };
    if plain.is_empty() {
        return Err("an empty topic filter matches nothing".into());
    }
    let levels: Vec<&str> = plain.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wildcard = level.contains(['+', '#']);
        if wildcard && *level != "+" && *level != "#" {
            return Err(format!(
                "`{filter}`: `+` and `#` must fill a whole topic level"
            ));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!("`{filter}`: `#` must be the last level"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates_fill_in_values_without_adding_levels() {
        let t = TopicTemplate::parse("alerts/{rule}/{key}", &["rule", "key"]).unwrap();
        let topic = t.render(|var| match var {
            "rule" => Some("too_warm"),
            _ => Some("site/3#a+b"),
        });
        assert_eq!(topic, "alerts/too_warm/site_3_a_b");
        let err = TopicTemplate::parse("alerts/{rul}", &["rule", "key"]).unwrap_err();
        assert_eq!(
            err,
            "unknown placeholder `{rul}` in topic, did you mean `rule`?"
        );
        let err = TopicTemplate::parse("a/{device}", &["rule", "key"]).unwrap_err();
        assert_eq!(
            err,
            "unknown placeholder `{device}` in topic, expected one of: rule, key"
        );
        assert!(TopicTemplate::parse("alerts/#", &["rule"]).is_err());
        assert!(TopicTemplate::parse("", &["rule"]).is_err());
    }

    #[test]
    fn filters_use_wildcards_for_whole_levels() {
        for good in ["a/b", "fleet/+/telemetry", "#", "a/#", "$share/g/fleet/+/t"] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "a/#/b", "a+/b", "a/b#", "$share//a", "$share/g"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}

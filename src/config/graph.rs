//! Whole-pipeline checks: ids, inputs, cycles, field references, tests.
//!
//! The checks run on every component that was written, including those
//! whose options failed to parse (their id and inputs are still known), so
//! one run reports every problem of the file.

use super::{Broken, ConfigError, Loc, Pipeline, Spanned, did_you_mean};
use crate::event::decode::KeySpec;
use crate::operators::{Emits, OperatorSpec};
use std::collections::{BTreeSet, HashMap};

/// One component as the graph checks see it.
struct Component<'a> {
    section: &'static str,
    id: &'a str,
    loc: Loc,
    inputs: &'a [Spanned<String>],
    /// `None` for sources, sinks and operators that failed to parse.
    operator: Option<&'a dyn OperatorSpec>,
}

impl Component<'_> {
    fn emits(&self) -> Option<Emits> {
        self.operator.map(|o| o.emits())
    }

    fn alerts(&self) -> bool {
        self.operator.is_some_and(|o| o.alerts())
    }
}

pub(super) fn check(p: &Pipeline, broken: &[Broken]) -> Vec<ConfigError> {
    let mut all: Vec<Component> = p
        .sources
        .iter()
        .map(|s| Component {
            section: "source",
            id: &s.id,
            loc: s.loc,
            inputs: &[],
            operator: None,
        })
        .chain(p.operators.iter().map(|o| Component {
            section: "operator",
            id: &o.id,
            loc: o.loc,
            inputs: &o.inputs,
            operator: Some(o.spec.as_ref()),
        }))
        .chain(p.sinks.iter().map(|s| Component {
            section: "sink",
            id: &s.id,
            loc: s.loc,
            inputs: &s.inputs,
            operator: None,
        }))
        .chain(broken.iter().map(|b| Component {
            section: b.section,
            id: &b.id,
            loc: b.loc,
            inputs: &b.inputs,
            operator: None,
        }))
        .collect();
    // File order, so a duplicate is reported where it is written second.
    all.sort_by_key(|c| c.loc);
    let mut errors = Vec::new();
    let ids = ids(&all, &mut errors);
    check_inputs(&all, &ids, &mut errors);
    let operators: Vec<_> = all
        .iter()
        .filter(|c| c.section == "operator")
        .map(|c| (c.id, c.loc, c.inputs))
        .collect();
    match order(&operators) {
        Ok(_) => check_fields(&all, &ids, &mut errors),
        Err(cycles) => errors.extend(cycles),
    }
    check_tests(p, &ids, &all, &mut errors);
    check_inhibitors(&all, &ids, &mut errors);
    errors
}

/// `inhibit_when` names an alerting operator other than its own.
fn check_inhibitors(all: &[Component], ids: &HashMap<&str, usize>, errors: &mut Vec<ConfigError>) {
    for c in all {
        let Some(rule) = c.operator.and_then(|o| o.inhibited_by()) else {
            continue;
        };
        let problem = match ids.get(rule.as_str()).map(|&i| &all[i]) {
            Some(other) if other.id == c.id => {
                "`inhibit_when` names the operator itself".to_string()
            }
            Some(other) if other.alerts() => continue,
            _ => {
                let rules = all.iter().filter(|o| o.alerts()).map(|o| o.id);
                format!(
                    "`inhibit_when`: \"{}\" is not an operator that raises alerts{}",
                    rule.value,
                    did_you_mean(rule, rules)
                )
            }
        };
        errors.push(ConfigError::at(rule.loc, problem));
    }
}

fn ids<'a>(all: &'a [Component<'a>], errors: &mut Vec<ConfigError>) -> HashMap<&'a str, usize> {
    let mut ids = HashMap::new();
    for (i, c) in all.iter().enumerate() {
        if let Some(&first) = ids.get(c.id) {
            let first: &Component = &all[first];
            errors.push(ConfigError::at(
                c.loc,
                format!(
                    "duplicate id \"{}\": already used by the {} at line {}",
                    c.id, first.section, first.loc.line
                ),
            ));
        } else {
            ids.insert(c.id, i);
        }
    }
    ids
}

fn check_inputs(all: &[Component], ids: &HashMap<&str, usize>, errors: &mut Vec<ConfigError>) {
    for taker in all {
        for input in taker.inputs {
            let (what, id) = (taker.section, taker.id);
            let problem = match ids.get(input.as_str()).map(|&i| &all[i]) {
                None => {
                    let candidates = all.iter().filter(|c| c.section != "sink").map(|c| c.id);
                    format!(
                        "input \"{}\" for {what} \"{id}\" doesn't match any source or operator{}",
                        input.value,
                        did_you_mean(input, candidates)
                    )
                }
                Some(c) if c.section == "sink" => {
                    format!(
                        "input \"{}\" for {what} \"{id}\" is a sink; inputs name sources or operators",
                        input.value
                    )
                }
                Some(c) if what == "operator" && c.emits() == Some(Emits::Alerts) => {
                    format!(
                        "input \"{}\" for operator \"{id}\" emits alerts, which only sinks can take",
                        input.value
                    )
                }
                _ => continue,
            };
            errors.push(ConfigError::at(input.loc, problem));
        }
    }
}

/// Indices of `operators` (id, position, inputs) ordered so each comes
/// after the operators it reads from. Fails with one error per cycle.
pub fn order(
    operators: &[(&str, Loc, &[Spanned<String>])],
) -> Result<Vec<usize>, Vec<ConfigError>> {
    let index: HashMap<&str, usize> = operators
        .iter()
        .enumerate()
        .map(|(i, o)| (o.0, i))
        .collect();
    let upstream: Vec<BTreeSet<usize>> = operators
        .iter()
        .map(|o| {
            o.2.iter()
                .filter_map(|i| index.get(i.as_str()).copied())
                .collect()
        })
        .collect();
    let mut placed = vec![false; operators.len()];
    let mut order = Vec::with_capacity(operators.len());
    // Repeated passes keep file order among independent operators; pipelines
    // have tens of operators, not thousands.
    while let Some(next) =
        (0..operators.len()).find(|&i| !placed[i] && upstream[i].iter().all(|&u| placed[u]))
    {
        placed[next] = true;
        order.push(next);
    }
    if order.len() == operators.len() {
        return Ok(order);
    }
    let mut errors = Vec::new();
    let mut reported = vec![false; operators.len()];
    for start in 0..operators.len() {
        if placed[start] || reported[start] {
            continue;
        }
        let Some(mut cycle) = cycle_from(start, &upstream, &placed) else {
            continue;
        };
        if cycle.iter().any(|&i| reported[i]) {
            continue;
        }
        cycle.iter().for_each(|&i| reported[i] = true);
        // Name the cycle from the operator written first, in data-flow order.
        cycle.reverse();
        let first = (0..cycle.len())
            .min_by_key(|&k| operators[cycle[k]].1)
            .unwrap_or(0);
        cycle.rotate_left(first);
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| operators[i].0)
            .collect();
        errors.push(ConfigError::at(
            operators[cycle[0]].1,
            format!("operators form a cycle: {}", names.join(" -> ")),
        ));
    }
    Err(errors)
}

/// Walks upstream from `start` through unplaced operators until one repeats.
fn cycle_from(start: usize, upstream: &[BTreeSet<usize>], placed: &[bool]) -> Option<Vec<usize>> {
    let mut path = vec![start];
    loop {
        let current = *path.last()?;
        let up = *upstream[current].iter().find(|&&u| !placed[u])?;
        if let Some(pos) = path.iter().position(|&x| x == up) {
            return Some(path.split_off(pos));
        }
        path.push(up);
    }
}

/// The fields a component's output can carry; `None` when any field may
/// appear (a source, or something that failed to parse).
fn produces(all: &[Component], ids: &HashMap<&str, usize>, id: &str) -> Option<BTreeSet<String>> {
    let c = &all[*ids.get(id)?];
    match c.emits()? {
        Emits::Alerts => Some(BTreeSet::new()),
        Emits::Events { keeps_input, adds } => {
            let mut fields: BTreeSet<String> = adds.into_iter().collect();
            if keeps_input {
                for input in c.inputs {
                    fields.extend(produces(all, ids, input)?);
                }
            }
            Some(fields)
        }
    }
}

fn check_fields(all: &[Component], ids: &HashMap<&str, usize>, errors: &mut Vec<ConfigError>) {
    for c in all {
        let Some(operator) = c.operator else { continue };
        let mut available = BTreeSet::new();
        let mut open = false;
        for input in c.inputs {
            match produces(all, ids, input) {
                Some(fields) => available.extend(fields),
                None => open = true,
            }
        }
        if open {
            continue;
        }
        let list: Vec<&str> = available.iter().map(String::as_str).collect();
        for field in operator
            .reads()
            .into_iter()
            .filter(|f| !available.contains(&f.name))
        {
            errors.push(ConfigError::at(
                field.loc,
                format!(
                    "operator \"{}\" reads field `{}`, which its inputs do not produce{} (they produce: {})",
                    c.id,
                    field.name,
                    did_you_mean(&field.name, list.iter().copied()),
                    list.join(", ")
                ),
            ));
        }
    }
}

/// Per source, the fields operators read from its events, directly or
/// through operators that pass them on (a filter), each with the ids of
/// the operators that read it, in file order.
pub fn source_reads(p: &Pipeline) -> Vec<Vec<(String, Vec<String>)>> {
    let mut reads: Vec<Vec<(String, Vec<String>)>> = vec![Vec::new(); p.sources.len()];
    for operator in &p.operators {
        for field in operator.spec.reads() {
            let mut from = BTreeSet::new();
            for input in &operator.inputs {
                origins(p, input, &field.name, &mut from);
            }
            for source in from {
                let i = match reads[source].iter().position(|(f, _)| *f == field.name) {
                    Some(i) => i,
                    None => {
                        reads[source].push((field.name.clone(), Vec::new()));
                        reads[source].len() - 1
                    }
                };
                let readers = &mut reads[source][i].1;
                if !readers.contains(&operator.id) {
                    readers.push(operator.id.clone());
                }
            }
        }
    }
    reads
}

/// The sources whose events can bring `field` to the output of `id`.
fn origins(p: &Pipeline, id: &str, field: &str, out: &mut BTreeSet<usize>) {
    if let Some(source) = p.sources.iter().position(|s| s.id == id) {
        out.insert(source);
        return;
    }
    let Some(operator) = p.operators.iter().find(|o| o.id == id) else {
        return;
    };
    if let Emits::Events {
        keeps_input: true,
        adds,
    } = operator.spec.emits()
        && !adds.iter().any(|a| a == field)
    {
        for input in &operator.inputs {
            origins(p, input, field, out);
        }
    }
}

/// The `key` of source `id` when it is a topic level (`topic[1]`).
fn topic_key<'a>(p: &'a Pipeline, id: &str) -> Option<&'a str> {
    let source = p.sources.iter().find(|s| s.id == id)?;
    let key = source.common.key.as_ref()?;
    matches!(KeySpec::parse(key), KeySpec::TopicLevel(_)).then_some(key.as_str())
}

fn check_tests(
    p: &Pipeline,
    ids: &HashMap<&str, usize>,
    all: &[Component],
    errors: &mut Vec<ConfigError>,
) {
    let sources = || all.iter().filter(|c| c.section == "source").map(|c| c.id);
    let rules = || all.iter().filter(|c| c.alerts()).map(|c| c.id);
    for case in &p.tests {
        for (source, events) in &case.inputs {
            if let Err(e) = super::test_case::recording(&events.value) {
                let message = format!("test \"{}\": input \"{source}\": {e}", case.name.value);
                errors.push(ConfigError::at(events.loc, message));
            }
            if let Some(key) = topic_key(p, source)
                && let Some(records) = events.as_array()
                && records
                    .iter()
                    .any(|r| super::test_case::message(r).0.is_none())
            {
                let message = format!(
                    "test \"{}\": input \"{source}\": the source takes its key from the topic (`key: {key}`), so every record needs one: {{topic: TOPIC, payload: {{...}}}}",
                    case.name.value
                );
                errors.push(ConfigError::at(events.loc, message));
            }
            if ids
                .get(source.as_str())
                .is_none_or(|&i| all[i].section != "source")
            {
                let hint = did_you_mean(source, sources());
                let message = format!(
                    "test \"{}\": input \"{source}\" is not a source{hint}",
                    case.name.value
                );
                errors.push(ConfigError::at(events.loc, message));
            }
        }
        for expected in &case.expect {
            if !rules().any(|r| r == expected.rule.as_str()) {
                let hint = did_you_mean(&expected.rule, rules());
                let message = format!(
                    "test \"{}\": \"{}\" is not an operator that raises alerts{hint}",
                    case.name.value, expected.rule.value
                );
                errors.push(ConfigError::at(expected.rule.loc, message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Pipeline;

    #[test]
    fn source_reads_follow_events_through_filters_and_stop_at_what_operators_add() {
        let yaml = r#"
sources:
  trucks: {type: file, path: t.jsonl}
  plant: {type: file, path: p.jsonl}
operators:
  closed: {type: filter, inputs: [trucks, plant], condition: "door == false"}
  stats: {type: window, inputs: [closed], size: 5m, aggregates: {m: mean(temp)}}
  hot: {type: threshold, inputs: [stats], field: m, above: 4}
  warm: {type: threshold, inputs: [closed], field: temp, above: 4, message: "{key} {site}"}
  spin: {type: threshold, inputs: [plant], field: rpm, above: 4}
"#;
        let p = Pipeline::parse(std::path::Path::new("p.yaml"), yaml).unwrap();
        let owned = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            (pairs.iter())
                .map(|(f, r)| (f.to_string(), r.iter().map(|r| r.to_string()).collect()))
                .collect()
        };
        let trucks = owned(&[
            ("door", &["closed"]),
            ("temp", &["stats", "warm"]),
            ("site", &["warm"]),
        ]);
        let mut plant = trucks.clone();
        plant.extend(owned(&[("rpm", &["spin"])]));
        assert_eq!(p.source_reads(), [trucks, plant]);
    }
}

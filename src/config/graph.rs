//! Whole-pipeline checks: ids, inputs, cycles, field references, tests.

use super::{ConfigError, Loc, Pipeline, did_you_mean};
use crate::operators::Emits;
use std::collections::{BTreeSet, HashMap};

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    Source(usize),
    Operator(usize),
    Sink(usize),
}

pub(super) fn check(p: &Pipeline) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let ids = ids(p, &mut errors);
    check_inputs(p, &ids, &mut errors);
    match topological_order(p) {
        Ok(_) => check_fields(p, &ids, &mut errors),
        Err(cycles) => errors.extend(cycles),
    }
    check_tests(p, &ids, &mut errors);
    errors
}

fn ids(p: &Pipeline, errors: &mut Vec<ConfigError>) -> HashMap<String, (Component, Loc)> {
    let all = p
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, Component::Source(i), s.loc))
        .chain(p.operators.iter().enumerate().map(|(i, o)| (&o.id, Component::Operator(i), o.loc)))
        .chain(p.sinks.iter().enumerate().map(|(i, s)| (&s.id, Component::Sink(i), s.loc)));
    let mut ids = HashMap::new();
    for (id, component, loc) in all {
        if let Some((_, first)) = ids.get(id) {
            let first: &Loc = first;
            errors.push(ConfigError::at(
                loc,
                format!("duplicate id \"{id}\": already used at line {}", first.line),
            ));
        } else {
            ids.insert(id.clone(), (component, loc));
        }
    }
    ids
}

fn check_inputs(p: &Pipeline, ids: &HashMap<String, (Component, Loc)>, errors: &mut Vec<ConfigError>) {
    let takers = p
        .operators
        .iter()
        .map(|o| ("operator", &o.id, &o.inputs))
        .chain(p.sinks.iter().map(|s| ("sink", &s.id, &s.inputs)));
    for (what, id, inputs) in takers {
        for input in inputs {
            let problem = match ids.get(input.as_str()).map(|(c, _)| *c) {
                None => {
                    let candidates = ids
                        .iter()
                        .filter(|(_, (c, _))| !matches!(c, Component::Sink(_)))
                        .map(|(name, _)| name.as_str());
                    format!(
                        "input \"{}\" for {what} \"{id}\" doesn't match any source or operator{}",
                        input.value,
                        did_you_mean(input, candidates)
                    )
                }
                Some(Component::Sink(_)) => {
                    format!("input \"{}\" for {what} \"{id}\" is a sink; inputs name sources or operators", input.value)
                }
                Some(Component::Operator(i)) if what == "operator" && p.operators[i].spec.emits() == Emits::Alerts => {
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

/// Operator indices with every operator after the operators it reads from.
/// Fails with one error per cycle.
pub fn topological_order(p: &Pipeline) -> Result<Vec<usize>, Vec<ConfigError>> {
    let index: HashMap<&str, usize> = p.operators.iter().enumerate().map(|(i, o)| (o.id.as_str(), i)).collect();
    let upstream: Vec<BTreeSet<usize>> = p
        .operators
        .iter()
        .map(|o| o.inputs.iter().filter_map(|i| index.get(i.as_str()).copied()).collect())
        .collect();
    let mut placed = vec![false; p.operators.len()];
    let mut order = Vec::with_capacity(p.operators.len());
    // Repeated passes keep file order among independent operators; pipelines
    // have tens of operators, not thousands.
    while let Some(next) = (0..p.operators.len()).find(|&i| !placed[i] && upstream[i].iter().all(|&u| placed[u])) {
        placed[next] = true;
        order.push(next);
    }
    if order.len() == p.operators.len() {
        return Ok(order);
    }
    let mut errors = Vec::new();
    let mut reported = vec![false; p.operators.len()];
    for start in (0..p.operators.len()).filter(|&i| !placed[i]) {
        if reported[start] {
            continue;
        }
        // Walk upstream through unplaced operators until one repeats.
        let mut path = vec![start];
        let mut current = start;
        let cycle = loop {
            let Some(&up) = upstream[current].iter().find(|&&u| !placed[u]) else {
                break None;
            };
            if let Some(pos) = path.iter().position(|&x| x == up) {
                break Some(path[pos..].to_vec());
            }
            path.push(up);
            current = up;
        };
        let Some(mut cycle) = cycle else { continue };
        cycle.iter().for_each(|&i| reported[i] = true);
        cycle.reverse();
        let first = *cycle.iter().min_by_key(|&&i| p.operators[i].loc).unwrap_or(&cycle[0]);
        let rotate = cycle.iter().position(|&i| i == first).unwrap_or(0);
        cycle.rotate_left(rotate);
        let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(|&i| p.operators[i].id.as_str()).collect();
        errors.push(ConfigError::at(
            p.operators[first].loc,
            format!("operators form a cycle: {}", names.join(" -> ")),
        ));
    }
    Err(errors)
}

/// What fields a component's output can carry.
enum Produces {
    /// A source: records may carry any field.
    Anything,
    Fields(BTreeSet<String>),
}

fn produces(p: &Pipeline, ids: &HashMap<String, (Component, Loc)>, id: &str) -> Produces {
    match ids.get(id).map(|(c, _)| *c) {
        Some(Component::Operator(i)) => match p.operators[i].spec.emits() {
            Emits::Alerts => Produces::Fields(BTreeSet::new()),
            Emits::Events { keeps_input, adds } => {
                let mut fields: BTreeSet<String> = adds.into_iter().collect();
                if keeps_input {
                    for input in &p.operators[i].inputs {
                        match produces(p, ids, input) {
                            Produces::Anything => return Produces::Anything,
                            Produces::Fields(more) => fields.extend(more),
                        }
                    }
                }
                Produces::Fields(fields)
            }
        },
        _ => Produces::Anything,
    }
}

fn check_fields(p: &Pipeline, ids: &HashMap<String, (Component, Loc)>, errors: &mut Vec<ConfigError>) {
    for op in &p.operators {
        let mut available = BTreeSet::new();
        let mut open = false;
        for input in &op.inputs {
            match produces(p, ids, input) {
                Produces::Anything => open = true,
                Produces::Fields(fields) => available.extend(fields),
            }
        }
        if open {
            continue;
        }
        for field in op.spec.reads() {
            if !available.contains(&field.name) {
                let list: Vec<&str> = available.iter().map(String::as_str).collect();
                errors.push(ConfigError::at(
                    field.loc,
                    format!(
                        "operator \"{}\" reads field `{}`, which its inputs do not produce{} (they produce: {})",
                        op.id,
                        field.name,
                        did_you_mean(&field.name, list.iter().copied()),
                        list.join(", ")
                    ),
                ));
            }
        }
    }
}

fn check_tests(p: &Pipeline, ids: &HashMap<String, (Component, Loc)>, errors: &mut Vec<ConfigError>) {
    let sources = || p.sources.iter().map(|s| s.id.as_str());
    let rules = || {
        p.operators
            .iter()
            .filter(|o| o.spec.emits() == Emits::Alerts)
            .map(|o| o.id.as_str())
    };
    for case in &p.tests {
        for (source, events) in &case.inputs {
            if !matches!(ids.get(source), Some((Component::Source(_), _))) {
                errors.push(ConfigError::at(
                    events.loc,
                    format!(
                        "test \"{}\": input \"{source}\" is not a source{}",
                        case.name.value,
                        did_you_mean(source, sources())
                    ),
                ));
            }
        }
        for expected in &case.expect {
            if !rules().any(|r| r == expected.rule.as_str()) {
                errors.push(ConfigError::at(
                    expected.rule.loc,
                    format!(
                        "test \"{}\": \"{}\" is not an operator that raises alerts{}",
                        case.name.value,
                        expected.rule.value,
                        did_you_mean(&expected.rule, rules())
                    ),
                ));
            }
        }
    }
}

//! Aggregate functions shared by `window` and `rolling`.
//!
//! Pipelines write them as a map from output field to expression:
//!
//! ```yaml
//! aggregates: {temp_mean: mean(temperature_c), temp_p95: p95(temperature_c), readings: count()}
//! ```
//!
//! | function | value |
//! |---|---|
//! | `count()` | events in the window |
//! | `count(x)` | events carrying field `x` |
//! | `sum`, `mean`, `min`, `max` | of the values |
//! | `stddev` | sample standard deviation (n - 1); needs 2 values |
//! | `p50`, `p95`, `p99`, any `pNN` or `pNN.N` | percentile, linear interpolation between closest ranks (as numpy's default and Excel's PERCENTILE.INC); exact |
//! | `first`, `last` | earliest and latest value by event time |
//! | `rate` | change per second from the first to the last value; needs 2 values at different times |
//! | `slope` | least-squares slope per second of value against time; needs 2 distinct times |
//!
//! An aggregate with no defined value (the mean of no values) is left out
//! of the output event rather than written as null.

use super::{BuildContext, FieldRef};
use crate::config::{ConfigError, Spanned, did_you_mean};
use crate::event::{Event, FieldId, Value};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Func {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    Stddev,
    /// A quantile in [0, 1].
    Quantile(f64),
    First,
    Last,
    Rate,
    Slope,
}

const NAMES: &[&str] = &[
    "count", "sum", "mean", "min", "max", "stddev", "p50", "p95", "p99", "first", "last", "rate",
    "slope",
];

impl Func {
    fn parse(name: &str) -> Result<Func, String> {
        Ok(match name {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "mean" | "avg" => Func::Mean,
            "min" => Func::Min,
            "max" => Func::Max,
            "stddev" => Func::Stddev,
            "first" => Func::First,
            "last" => Func::Last,
            "rate" => Func::Rate,
            "slope" => Func::Slope,
            p if p.starts_with('p') && p.len() > 1 => match p[1..].parse::<f64>() {
                Ok(q) if (0.0..=100.0).contains(&q) => Func::Quantile(q / 100.0),
                _ => {
                    return Err(format!(
                        "bad percentile `{p}`: use p0 to p100, like p95 or p99.9"
                    ));
                }
            },
            other => {
                let hint = did_you_mean(other, NAMES.iter().copied());
                return Err(format!("unknown aggregate function `{other}`{hint}"));
            }
        })
    }
}

/// One `output: func(field)` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub output: String,
    pub func: Func,
    /// `None` only for `count()`.
    pub field: Option<String>,
}

/// Parses `func(field)` or `count()`.
pub fn parse(output: &str, expr: &str) -> Result<Aggregate, String> {
    let expr = expr.trim();
    let (name, rest) = expr.split_once('(').ok_or_else(|| {
        format!(
            "`{expr}` is not an aggregate: write it as function(field), like mean(temperature_c)"
        )
    })?;
    let field = rest
        .strip_suffix(')')
        .ok_or_else(|| format!("`{expr}`: missing `)`"))?
        .trim();
    let func = Func::parse(name.trim())?;
    let field = match (func, field) {
        (Func::Count, "") => None,
        (_, "") => {
            return Err(format!(
                "`{expr}`: name the field, like {}(temperature_c)",
                name.trim()
            ));
        }
        (_, f) if f.contains(['(', ')', ',']) => {
            return Err(format!("`{expr}`: one field name expected"));
        }
        (_, f) => Some(f.to_string()),
    };
    Ok(Aggregate {
        output: output.to_string(),
        func,
        field,
    })
}

/// The `aggregates:` map of a window or rolling operator, in file order.
#[derive(Clone, Debug)]
pub struct Aggregates(Vec<(Spanned<String>, Spanned<String>)>);

impl Aggregates {
    /// The parsed aggregates, or every problem with its position.
    pub fn parse(aggregates: &Spanned<Aggregates>) -> Result<Vec<Aggregate>, Vec<ConfigError>> {
        if aggregates.0.is_empty() {
            return Err(vec![ConfigError::at(
                aggregates.loc,
                "`aggregates` must name at least one aggregate",
            )]);
        }
        let (parsed, problems): (Vec<_>, Vec<_>) = aggregates
            .0
            .iter()
            .map(|(name, expr)| parse(name, expr).map_err(|e| ConfigError::at(expr.loc, e)))
            .partition(Result::is_ok);
        if problems.is_empty() {
            Ok(parsed.into_iter().flatten().collect())
        } else {
            Err(problems.into_iter().filter_map(Result::err).collect())
        }
    }

    /// Output field names.
    pub fn outputs(&self) -> Vec<String> {
        self.0.iter().map(|(name, _)| name.value.clone()).collect()
    }

    /// Fields read, with the position of the expression naming each.
    pub fn reads(&self) -> Vec<FieldRef> {
        self.0
            .iter()
            .filter_map(|(name, expr)| {
                let field = parse(name, expr).ok()?.field?;
                Some(FieldRef {
                    name: field,
                    loc: expr.loc,
                })
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for Aggregates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Aggregates;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a mapping of output field to aggregate, like {temp_mean: mean(temperature_c)}",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Aggregates, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Aggregates(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// Count, mean, variance and the value-time co-moment of a set of readings,
/// kept in Welford's form: numerically stable for values with a large
/// offset (1e9 plus noise), mergeable (Chan et al.) and removable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    mean_v: f64,
    m2_v: f64,
    /// Time in seconds; only relative times matter to the slope.
    mean_t: f64,
    m2_t: f64,
    c_tv: f64,
}

impl Moments {
    pub fn add(&mut self, t_ms: i64, v: f64) {
        let t = t_ms as f64 / 1000.0;
        self.n += 1;
        self.sum += v;
        let n = self.n as f64;
        let (dv, dt) = (v - self.mean_v, t - self.mean_t);
        self.mean_v += dv / n;
        self.mean_t += dt / n;
        self.m2_v += dv * (v - self.mean_v);
        self.m2_t += dt * (t - self.mean_t);
        self.c_tv += dt * (v - self.mean_v);
    }

    /// Undoes `add(t_ms, v)` of a reading that was added before.
    pub fn remove(&mut self, t_ms: i64, v: f64) {
        if self.n <= 1 {
            *self = Moments::default();
            return;
        }
        let t = t_ms as f64 / 1000.0;
        let n = self.n as f64;
        // Shift the mean by the removed reading's deviation: exact enough
        // where `(n * mean - v) / (n - 1)` would cancel catastrophically.
        let mean_v = self.mean_v - (v - self.mean_v) / (n - 1.0);
        let mean_t = self.mean_t - (t - self.mean_t) / (n - 1.0);
        self.m2_v = (self.m2_v - (v - self.mean_v) * (v - mean_v)).max(0.0);
        self.m2_t = (self.m2_t - (t - self.mean_t) * (t - mean_t)).max(0.0);
        self.c_tv -= (t - self.mean_t) * (v - mean_v);
        self.mean_v = mean_v;
        self.mean_t = mean_t;
        self.n -= 1;
        self.sum -= v;
    }

    pub fn merge(&mut self, other: &Moments) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let (dv, dt) = (other.mean_v - self.mean_v, other.mean_t - self.mean_t);
        self.m2_v += other.m2_v + dv * dv * na * nb / n;
        self.m2_t += other.m2_t + dt * dt * na * nb / n;
        self.c_tv += other.c_tv + dt * dv * na * nb / n;
        self.mean_v += dv * nb / n;
        self.mean_t += dt * nb / n;
        self.n += other.n;
        self.sum += other.sum;
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean_v)
    }

    fn stddev(&self) -> Option<f64> {
        (self.n > 1).then(|| (self.m2_v / (self.n - 1) as f64).sqrt())
    }

    fn slope(&self) -> Option<f64> {
        (self.n > 1 && self.m2_t > 0.0).then(|| self.c_tv / self.m2_t)
    }
}

/// What an aggregate is computed from: any summary of readings.
pub trait Readings {
    fn moments(&self) -> &Moments;
    fn min(&self) -> Option<f64>;
    fn max(&self) -> Option<f64>;
    /// Earliest and latest (time, value).
    fn first(&self) -> Option<(i64, f64)>;
    fn last(&self) -> Option<(i64, f64)>;
    /// The values, in any order, for percentiles.
    fn values(&self) -> &[f64];
    /// The q-quantile of the values.
    fn quantile(&self, q: f64) -> Option<f64> {
        quantile(self.values(), q)
    }
}

/// The value of `func` over `readings`; `events` is the count of all
/// events, for `count()`.
pub fn evaluate(func: Func, readings: Option<&dyn Readings>, events: u64) -> Option<f64> {
    let Some(r) = readings else {
        return (func == Func::Count).then_some(events as f64);
    };
    let m = r.moments();
    match func {
        Func::Count => Some(m.n as f64),
        Func::Sum => (m.n > 0).then_some(m.sum),
        Func::Mean => m.mean(),
        Func::Min => r.min(),
        Func::Max => r.max(),
        Func::Stddev => m.stddev(),
        Func::Quantile(q) => r.quantile(q),
        Func::First => r.first().map(|(_, v)| v),
        Func::Last => r.last().map(|(_, v)| v),
        Func::Rate => {
            let ((t0, v0), (t1, v1)) = (r.first()?, r.last()?);
            (t1 > t0).then(|| (v1 - v0) / ((t1 - t0) as f64 / 1000.0))
        }
        Func::Slope => m.slope(),
    }
}

/// What a field's aggregates need kept beyond sums and moments; each costs
/// memory and time per event, so it is kept only when asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Needs {
    /// The values themselves, for percentiles.
    pub values: bool,
    /// Minimum and maximum.
    pub extremes: bool,
}

/// An operator's aggregates with field names resolved to ids.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Fields read, and what each needs kept.
    pub inputs: Arc<[(FieldId, Needs)]>,
    /// Output field, function, and index into `inputs` (`None`: `count()`).
    outputs: Arc<[(FieldId, Func, Option<usize>)]>,
}

impl Resolved {
    pub fn new(aggregates: &[Aggregate], ctx: &mut BuildContext) -> Resolved {
        let mut inputs: Vec<(FieldId, Needs)> = Vec::new();
        let mut outputs = Vec::new();
        for a in aggregates {
            let input = a.field.as_ref().map(|name| {
                let id = ctx.numeric_field(name);
                let index = match inputs.iter().position(|(f, _)| *f == id) {
                    Some(index) => index,
                    None => {
                        inputs.push((id, Needs::default()));
                        inputs.len() - 1
                    }
                };
                let needs = &mut inputs[index].1;
                needs.values |= matches!(a.func, Func::Quantile(_));
                needs.extremes |= matches!(a.func, Func::Min | Func::Max);
                index
            });
            outputs.push((ctx.field(&a.output), a.func, input));
        }
        Resolved {
            inputs: inputs.into(),
            outputs: outputs.into(),
        }
    }

    /// Sets every defined aggregate on `event`; `readings(i)` summarises
    /// input `i`, `events` counts all events for `count()`.
    pub fn fill<'r>(
        &self,
        event: &mut Event,
        readings: impl Fn(usize) -> &'r dyn Readings,
        events: u64,
    ) {
        for &(field, func, input) in self.outputs.iter() {
            if let Some(value) = evaluate(func, input.map(&readings), events) {
                event.set(field, Value::Num(value));
            }
        }
    }
}

thread_local! {
    /// Scratch for percentiles, so computing one allocates nothing.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// The q-quantile by linear interpolation between closest ranks.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        scratch.extend_from_slice(values);
        let rank = q * (scratch.len() - 1) as f64;
        let (lo, frac) = (rank.floor() as usize, rank.fract());
        let (_, &mut below, above) = scratch.select_nth_unstable_by(lo, f64::total_cmp);
        if frac == 0.0 || above.is_empty() {
            return Some(below);
        }
        let next = above.iter().copied().fold(f64::INFINITY, f64::min);
        Some(below + (next - below) * frac)
    })
}

/// Sorted-position quantile over values already in order (rolling keeps
/// its values sorted).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q * last as f64;
    let lo = rank.floor() as usize;
    let below = sorted[lo];
    Some(match sorted.get(lo + 1) {
        Some(&next) => below + (next - below) * rank.fract(),
        None => below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expressions() {
        let a = parse("p", "p95(temperature_c)").unwrap();
        assert_eq!(
            (a.func, a.field.as_deref()),
            (Func::Quantile(0.95), Some("temperature_c"))
        );
        assert_eq!(parse("c", "count()").unwrap().field, None);
        assert_eq!(
            parse("c", " count( x ) ").unwrap().field.as_deref(),
            Some("x")
        );
        let Func::Quantile(q) = parse("p", "p99.9(x)").unwrap().func else {
            panic!()
        };
        assert!((q - 0.999).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_expressions_with_hints() {
        assert_eq!(
            parse("m", "maen(x)").unwrap_err(),
            "unknown aggregate function `maen`, did you mean `mean`?"
        );
        for bad in ["mean", "mean(x", "mean()", "p101(x)", "mean(a, b)", "px(x)"] {
            assert!(parse("o", bad).is_err(), "{bad}");
        }
    }

    /// A plain reference implementation over a slice.
    struct Plain {
        moments: Moments,
        points: Vec<(i64, f64)>,
        values: Vec<f64>,
    }

    impl Plain {
        fn new(points: &[(i64, f64)]) -> Plain {
            let mut moments = Moments::default();
            points.iter().for_each(|&(t, v)| moments.add(t, v));
            Plain {
                moments,
                points: points.to_vec(),
                values: points.iter().map(|p| p.1).collect(),
            }
        }
    }

    impl Readings for Plain {
        fn moments(&self) -> &Moments {
            &self.moments
        }
        fn min(&self) -> Option<f64> {
            self.values.iter().copied().reduce(f64::min)
        }
        fn max(&self) -> Option<f64> {
            self.values.iter().copied().reduce(f64::max)
        }
        fn first(&self) -> Option<(i64, f64)> {
            self.points.first().copied()
        }
        fn last(&self) -> Option<(i64, f64)> {
            self.points.last().copied()
        }
        fn values(&self) -> &[f64] {
            &self.values
        }
    }

    fn eval(func: Func, points: &[(i64, f64)]) -> Option<f64> {
        let plain = Plain::new(points);
        evaluate(func, Some(&plain), points.len() as u64)
    }

    #[test]
    fn each_function_on_a_small_series() {
        let s = [
            (0, 2.0),
            (1000, 4.0),
            (2000, 4.0),
            (3000, 4.0),
            (4000, 5.0),
            (5000, 5.0),
            (6000, 7.0),
            (7000, 9.0),
        ];
        assert_eq!(eval(Func::Count, &s), Some(8.0));
        assert_eq!(eval(Func::Sum, &s), Some(40.0));
        assert_eq!(eval(Func::Mean, &s), Some(5.0));
        assert_eq!(eval(Func::Min, &s), Some(2.0));
        assert_eq!(eval(Func::Max, &s), Some(9.0));
        let sd = eval(Func::Stddev, &s).unwrap();
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12, "{sd}");
        assert_eq!(eval(Func::First, &s), Some(2.0));
        assert_eq!(eval(Func::Last, &s), Some(9.0));
        assert_eq!(eval(Func::Rate, &s), Some(1.0));
        assert_eq!(eval(Func::Quantile(0.5), &s), Some(4.5));
        let line: Vec<_> = (0..10).map(|i| (i * 2000, 3.0 + 0.5 * i as f64)).collect();
        assert!((eval(Func::Slope, &line).unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn undefined_values_are_absent() {
        assert_eq!(eval(Func::Mean, &[]), None);
        assert_eq!(eval(Func::Stddev, &[(0, 1.0)]), None);
        assert_eq!(eval(Func::Rate, &[(0, 1.0), (0, 2.0)]), None);
        assert_eq!(eval(Func::Slope, &[(5, 1.0)]), None);
        assert_eq!(evaluate(Func::Count, None, 3), Some(3.0));
        assert_eq!(evaluate(Func::Mean, None, 3), None);
    }

    #[test]
    fn percentiles_match_a_sorted_reference() {
        let mut x = 12345u64;
        let mut values = Vec::new();
        for _ in 0..3001 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            values.push((x >> 40) as f64 / 1000.0 - 5000.0);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.5, 0.95, 0.99, 0.999, 1.0] {
            let rank = q * (sorted.len() - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            let reference = sorted[lo] + (sorted[hi] - sorted[lo]) * rank.fract();
            assert_eq!(quantile(&values, q), Some(reference), "q={q}");
            assert_eq!(quantile_sorted(&sorted, q), Some(reference), "q={q}");
        }
    }

    #[test]
    fn moments_stay_precise_with_a_large_offset_and_merge_and_remove() {
        let points: Vec<_> = (0..1000)
            .map(|i| (i * 1000, 1e9 + (i % 7) as f64 * 0.1))
            .collect();
        let reference = {
            let small: Vec<_> = points.iter().map(|&(t, v)| (t, v - 1e9)).collect();
            eval(Func::Stddev, &small).unwrap()
        };
        assert!((eval(Func::Stddev, &points).unwrap() - reference).abs() < 1e-6);

        let (mut a, mut b, mut all) = (Moments::default(), Moments::default(), Moments::default());
        for (i, &(t, v)) in points.iter().enumerate() {
            if i < 400 {
                a.add(t, v)
            } else {
                b.add(t, v)
            }
            all.add(t, v);
        }
        a.merge(&b);
        assert!((a.stddev().unwrap() - all.stddev().unwrap()).abs() < 1e-9);
        assert!((a.slope().unwrap() - all.slope().unwrap()).abs() < 1e-9);

        let mut rolling = all;
        for &(t, v) in &points[..400] {
            rolling.remove(t, v);
        }
        let mut tail = Moments::default();
        points[400..].iter().for_each(|&(t, v)| tail.add(t, v));
        assert_eq!(rolling.n, tail.n);
        assert!((rolling.stddev().unwrap() - tail.stddev().unwrap()).abs() < 1e-6);
        let (r, t) = (rolling.mean().unwrap(), tail.mean().unwrap());
        assert!((r - t).abs() < 1e-5, "{r} {t}");
    }
}

//! Pipeline files: loading, component registries and validation.
//!
//! A pipeline is read in three steps. The YAML text becomes a tree that
//! remembers positions ([`yaml`]); each component is deserialized from its
//! subtree by the registry of its section (`sources`, `operators`, `sinks`);
//! then the graph is checked as a whole ([`graph`]). Every step collects its
//! problems instead of stopping at the first, so one run of
//! `floe validate` shows them all.

mod duration;
mod error;
mod graph;
pub mod test_case;
pub mod yaml;

pub use duration::Duration;
pub use error::{ConfigError, Diagnostics, Loc, closest, did_you_mean};
pub use yaml::{Node, from_node};

use crate::event::decode::{KeySpec, TimeSpec};
use crate::operators::OperatorSpec;
use crate::runtime::{SinkMetrics, Telemetry};
use crate::sinks::SinkSpec;
use crate::sources::{SourceCommon, SourceSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use test_case::TestCase;

/// A value with the position it was written at, for errors found after
/// deserialization (an unknown input, a field no upstream produces).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Spanned<T> {
    /// A value with no place in a file: a default.
    pub fn unplaced(value: T) -> Self {
        Spanned {
            value,
            loc: Loc::default(),
        }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let missing = || serde::de::Error::custom("incomplete span");
                let line: u32 = seq.next_element()?.ok_or_else(missing)?;
                let col: u32 = seq.next_element()?.ok_or_else(missing)?;
                let value = seq.next_element()?.ok_or_else(missing)?;
                Ok(Spanned {
                    value,
                    loc: Loc { line, col },
                })
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                Ok(Spanned {
                    value: T::deserialize(d)?,
                    loc: Loc::default(),
                })
            }
        }
        d.deserialize_newtype_struct(yaml::SPANNED, V(std::marker::PhantomData))
    }
}

/// What a component learns about its place when it is opened.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The directory relative paths start from: the pipeline file's.
    pub base: &'a Path,
    pub pipeline: &'a str,
    /// The component's id in the pipeline.
    pub id: &'a str,
    /// The process's metrics, for a sink's retries and failures.
    pub telemetry: &'a Telemetry,
    /// The run's state dir, if it has one: where a sink keeps its spool.
    pub state_dir: Option<&'a Path>,
}

impl Context<'_> {
    /// The MQTT client id a component uses unless told otherwise: stable
    /// across restarts, so the broker resumes the component's session.
    pub fn default_client_id(&self) -> String {
        format!("floe-{}-{}", self.pipeline, self.id)
    }

    /// The metric handles of the sink this context opens.
    pub fn sink_metrics(&self) -> SinkMetrics {
        self.telemetry.sink(self.pipeline, self.id)
    }
}

/// A loaded, validated pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    /// The file it came from; relative paths inside it are relative to its
    /// directory, so a pipeline runs the same from any working directory.
    pub path: PathBuf,
    pub sources: Vec<SourceDef>,
    pub operators: Vec<OperatorDef>,
    pub sinks: Vec<SinkDef>,
    pub dead_letter: Option<Box<dyn SinkSpec>>,
    pub tests: Vec<TestCase>,
    /// Where to checkpoint, unless `--state-dir` says.
    pub state: Option<StateConfig>,
    /// Where to serve metrics and the dashboard, unless `--http` says.
    pub http: Option<HttpConfig>,
}

/// `http:`: the metrics, health and dashboard server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `HOST:PORT`, or a port alone for 127.0.0.1.
    pub listen: Spanned<String>,
    /// Clients must send `Authorization: Bearer TOKEN` for everything but
    /// `/health`. Write it as `${FLOE_HTTP_TOKEN}`.
    pub token: Option<Secret>,
}

/// A password or token: kept out of `Debug` output and logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// A listen address: `HOST:PORT`, or a port alone for 127.0.0.1, so that
/// nothing is exposed beyond the machine unless asked.
pub fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let full = match text.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => text.to_string(),
    };
    full.parse()
        .map_err(|_| format!("`{text}` is not HOST:PORT (an IP address and a port) or a port"))
}

/// `state:`: checkpoints of the pipeline's state, so a restart (even
/// after kill -9) resumes where it stopped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state directory; relative paths start at the pipeline file's
    /// directory. `floe run --state-dir` overrides it.
    pub dir: PathBuf,
    /// How often to checkpoint.
    #[serde(default = "one_second")]
    pub interval: Spanned<Duration>,
}

fn one_second() -> Spanned<Duration> {
    Spanned::unplaced(Duration(1000))
}

#[derive(Debug)]
pub struct SourceDef {
    pub id: String,
    pub loc: Loc,
    /// Of its definition (see [`Node::fingerprint`]): a checkpoint resumes
    /// the source only if it is unchanged.
    pub fingerprint: u64,
    pub common: SourceCommon,
    pub spec: Box<dyn SourceSpec>,
}

impl SourceDef {
    /// `key: topic[N]` needs a source whose messages arrive on topics;
    /// `key: record.key` and `time: record.timestamp`, one that reads
    /// Kafka records; `time_format`, a time field to read.
    pub fn check_envelope(&self) -> Vec<ConfigError> {
        let carries = self.spec.carries();
        let mut problems = Vec::new();
        let mut problem = |loc, what: String| {
            problems.push(ConfigError::at(
                loc,
                format!("source \"{}\": {what}", self.id),
            ))
        };
        if let Some(key) = &self.common.key {
            let needs = match KeySpec::parse(key) {
                KeySpec::TopicLevel(_) if !carries.topics => {
                    Some("takes the key from a topic level, and only mqtt sources have topics")
                }
                KeySpec::RecordKey if !carries.records => {
                    Some("takes the key from a record's key, and only kafka sources have records")
                }
                _ => None,
            };
            if let Some(needs) = needs {
                problem(key.loc, format!("`key: {}` {needs}", key.value));
            }
        }
        let record_time = (self.common.time.as_ref())
            .filter(|time| TimeSpec::parse(time) == TimeSpec::RecordTimestamp);
        if let Some(time) = record_time
            && !carries.records
        {
            problem(
                time.loc,
                format!(
                    "`time: {}` takes the time from a record's timestamp, and only kafka sources have records",
                    time.value
                ),
            );
        }
        let header = (self.common.trace.as_ref())
            .filter(|t| t.starts_with(crate::event::decode::TRACE_HEADER));
        if let Some(trace) = header
            && !carries.headers
        {
            problem(
                trace.loc,
                format!(
                    "`trace: {}` takes the id from a message's header, and only kafka sources and mqtt sources with `version: 5` (user properties) have headers",
                    trace.value
                ),
            );
        }
        match (&self.common.time_format, &self.common.time) {
            (Some(format), None) => problem(
                format.loc,
                "`time_format` says how `time` is written, and there is no `time`".into(),
            ),
            (Some(format), Some(_)) if record_time.is_some() => problem(
                format.loc,
                "`time_format` does not apply to `time: record.timestamp` (epoch milliseconds)"
                    .into(),
            ),
            _ => {}
        }
        problems
    }
}

/// An operator or a sink: a component that takes `inputs`.
#[derive(Debug)]
pub struct TakerDef<S: ?Sized> {
    pub id: String,
    pub loc: Loc,
    /// Of its definition, inputs included (see [`Node::fingerprint`]): a
    /// checkpoint restores an operator's state only if it is unchanged.
    pub fingerprint: u64,
    pub inputs: Vec<Spanned<String>>,
    pub spec: Box<S>,
}

pub type OperatorDef = TakerDef<dyn OperatorSpec>;
pub type SinkDef = TakerDef<dyn SinkSpec>;

/// How a section's registry turns a component's mapping (without its common
/// keys) into its spec.
pub type ParseFn<T> = fn(&Node) -> Result<Box<T>, Vec<ConfigError>>;

/// One section's component types, by the name pipelines use in `type:`.
pub struct Registry<T: ?Sized + 'static> {
    pub section: &'static str,
    pub built: &'static [(&'static str, ParseFn<T>)],
}

impl<T: ?Sized> Registry<T> {
    /// Parses the spec of a component of type `type_name`.
    pub fn parse(
        &self,
        type_name: &Spanned<String>,
        node: &Node,
    ) -> Result<Box<T>, Vec<ConfigError>> {
        if let Some((_, parse)) = self
            .built
            .iter()
            .find(|(name, _)| *name == type_name.as_str())
        {
            return parse(node);
        }
        let names = self.built.iter().map(|(name, _)| *name);
        let hint = match did_you_mean(type_name, names.clone()) {
            hint if hint.is_empty() => format!(
                ", expected one of: {}",
                names.collect::<Vec<_>>().join(", ")
            ),
            hint => hint,
        };
        let message = format!("unknown {} type `{}`{hint}", self.section, type_name.value);
        Err(vec![ConfigError::at(type_name.loc, message)])
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "sources",
    "operators",
    "sinks",
    "dead_letter",
    "tests",
    "state",
    "http",
];

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::new(
                path,
                vec![ConfigError::new(None, format!("cannot read file: {e}"))],
            )
        })?;
        Pipeline::parse(path, &text).map_err(|errors| Diagnostics::new(path, errors))
    }

    /// Parses and validates pipeline text; `path` names it and anchors
    /// relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, Vec<ConfigError>> {
        let root = yaml::parse(text)?;
        if let Some(kind) = root.get("kind").filter(|_| Pipeline::is_scenario(&root)) {
            let message = "this is a simulator scenario (it has `kind:`), not a pipeline: `floe simulate` runs it";
            return Err(vec![ConfigError::at(kind.loc, message)]);
        }
        let mut errors = Vec::new();
        let Some(entries) = root.entries() else {
            return Err(vec![ConfigError::at(
                root.loc,
                "a pipeline must be a mapping",
            )]);
        };
        for (key, _) in entries {
            let name = key.as_str().unwrap_or_default();
            if !TOP_LEVEL_KEYS.contains(&name) {
                let hint = did_you_mean(name, TOP_LEVEL_KEYS.iter().copied());
                errors.push(ConfigError::at(
                    key.loc,
                    format!("unknown section `{name}`{hint}"),
                ));
            }
        }
        let name = match root.get("name") {
            Some(node) => collect(from_node::<String>(node), &mut errors).unwrap_or_default(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into()),
        };
        let mut broken = Vec::new();
        let pipeline = Pipeline {
            name,
            path: path.to_path_buf(),
            sources: parse_sources(&root, &mut errors, &mut broken),
            operators: parse_takers(
                &root,
                "operator",
                &crate::operators::REGISTRY,
                &mut errors,
                &mut broken,
            ),
            sinks: parse_takers(
                &root,
                "sink",
                &crate::sinks::REGISTRY,
                &mut errors,
                &mut broken,
            ),
            dead_letter: parse_dead_letter(&root, &mut errors),
            tests: parse_tests(&root, &mut errors),
            state: parse_state(&root, &mut errors),
            http: parse_http(&root, &mut errors),
        };
        if root.get("sources").is_none() {
            errors.push(ConfigError::at(
                root.loc,
                "a pipeline needs a `sources` section",
            ));
        }
        errors.extend(graph::check(&pipeline, &broken));
        if errors.is_empty() {
            Ok(pipeline)
        } else {
            Err(errors)
        }
    }

    /// Whether a file's YAML is a simulator scenario rather than a
    /// pipeline: it names a `kind` of fleet and has no `sources`.
    pub fn is_scenario(root: &Node) -> bool {
        root.get("kind").is_some() && root.get("sources").is_none()
    }

    /// Operator indices, each after the operators it reads from.
    pub fn operator_order(&self) -> Vec<usize> {
        let operators: Vec<_> = self
            .operators
            .iter()
            .map(|o| (o.id.as_str(), o.loc, o.inputs.as_slice()))
            .collect();
        // Validation rejected cycles, so this cannot fail for a loaded pipeline.
        graph::order(&operators).unwrap_or_default()
    }

    /// Per source, the fields operators read from its events, with the
    /// operators reading each (see [`graph::source_reads`]).
    pub fn source_reads(&self) -> Vec<Vec<(String, Vec<String>)>> {
        graph::source_reads(self)
    }

    /// Resolves a path written in the pipeline file against its directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

fn collect<T>(result: Result<T, Vec<ConfigError>>, errors: &mut Vec<ConfigError>) -> Option<T> {
    result.map_err(|e| errors.extend(e)).ok()
}

/// A component as written: its id, its mapping and its `type`.
struct RawComponent<'a> {
    id: String,
    loc: Loc,
    node: &'a Node,
    type_name: Spanned<String>,
}

/// Walks a section (`sources:` ...), checking what every component shares.
fn components<'a>(
    root: &'a Node,
    section: &str,
    what: &'static str,
    errors: &mut Vec<ConfigError>,
    broken: &mut Vec<Broken>,
) -> Vec<RawComponent<'a>> {
    let Some(node) = root.get(section) else {
        return Vec::new();
    };
    if matches!(node.kind, yaml::NodeKind::Null) {
        return Vec::new();
    }
    let Some(entries) = node.entries() else {
        errors.push(ConfigError::at(
            node.loc,
            format!("`{section}` must be a mapping of id to {what}"),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let Some(id) = key.as_str() else {
            errors.push(ConfigError::at(
                key.loc,
                format!("{what} ids must be strings"),
            ));
            continue;
        };
        let error = match value.get("type").map(from_node::<Spanned<String>>) {
            Some(Ok(type_name)) => {
                out.push(RawComponent {
                    id: id.to_string(),
                    loc: key.loc,
                    node: value,
                    type_name,
                });
                continue;
            }
            Some(Err(e)) => e,
            None => vec![ConfigError::at(value.loc, "missing field `type`")],
        };
        errors.extend(error.into_iter().map(|e| e.in_component(what, id)));
        broken.push(Broken {
            section: what,
            id: id.to_string(),
            loc: key.loc,
            inputs: parse_inputs(value).unwrap_or_default(),
        });
    }
    out
}

/// Parses a component's spec, suggesting a shared key when a typo is close
/// to one (`input` for `inputs`): the spec itself only knows its own keys.
fn parse_spec<T: ?Sized>(
    registry: &Registry<T>,
    raw: &RawComponent,
    shared: &[&str],
) -> Result<Box<T>, Vec<ConfigError>> {
    let mut skip = vec!["type"];
    skip.extend_from_slice(shared);
    registry
        .parse(&raw.type_name, &raw.node.without(&skip))
        .map_err(|errors| errors.into_iter().map(|e| e.hint_field(shared)).collect())
}

fn parse_inputs(component: &Node) -> Result<Vec<Spanned<String>>, Vec<ConfigError>> {
    let node = component
        .get("inputs")
        .ok_or_else(|| vec![ConfigError::at(component.loc, "missing field `inputs`")])?;
    let inputs: Vec<Spanned<String>> = from_node(node)?;
    if inputs.is_empty() {
        return Err(vec![ConfigError::at(
            node.loc,
            "`inputs` must name at least one component",
        )]);
    }
    Ok(inputs)
}

/// A component that failed to parse, kept so the graph checks still see
/// its id and inputs: one typo should not hide an unknown input elsewhere.
pub(crate) struct Broken {
    pub section: &'static str,
    pub id: String,
    pub loc: Loc,
    pub inputs: Vec<Spanned<String>>,
}

/// Parses every component of a section: its spec through the registry and
/// the keys all components of the section share through `shared`.
fn parse_section<T: ?Sized, C>(
    root: &Node,
    what: &'static str,
    registry: &Registry<T>,
    shared_keys: &[&str],
    shared: impl Fn(&RawComponent) -> Result<C, Vec<ConfigError>>,
    errors: &mut Vec<ConfigError>,
    broken: &mut Vec<Broken>,
) -> Vec<(String, Loc, u64, C, Box<T>)> {
    let section = format!("{what}s");
    let mut out = Vec::new();
    for raw in components(root, &section, what, errors, broken) {
        match (shared(&raw), parse_spec(registry, &raw, shared_keys)) {
            (Ok(common), Ok(spec)) => {
                out.push((raw.id, raw.loc, raw.node.fingerprint(), common, spec))
            }
            (common, spec) => {
                let problems =
                    (common.err().into_iter().flatten()).chain(spec.err().into_iter().flatten());
                errors.extend(problems.map(|e| e.in_component(what, &raw.id)));
                broken.push(Broken {
                    section: what,
                    inputs: parse_inputs(raw.node).unwrap_or_default(),
                    id: raw.id,
                    loc: raw.loc,
                });
            }
        }
    }
    out
}

fn parse_sources(
    root: &Node,
    errors: &mut Vec<ConfigError>,
    broken: &mut Vec<Broken>,
) -> Vec<SourceDef> {
    let keys = SourceCommon::KEYS;
    let common = |raw: &RawComponent| from_node::<SourceCommon>(&raw.node.only(keys));
    parse_section(
        root,
        "source",
        &crate::sources::REGISTRY,
        keys,
        common,
        errors,
        broken,
    )
    .into_iter()
    .map(|(id, loc, fingerprint, common, spec)| SourceDef {
        id,
        loc,
        fingerprint,
        common,
        spec,
    })
    .inspect(|source| errors.extend(source.check_envelope()))
    .collect()
}

/// Parses the operators or the sinks: components with `inputs`.
fn parse_takers<S: ?Sized>(
    root: &Node,
    what: &'static str,
    registry: &Registry<S>,
    errors: &mut Vec<ConfigError>,
    broken: &mut Vec<Broken>,
) -> Vec<TakerDef<S>> {
    let inputs = |raw: &RawComponent| parse_inputs(raw.node);
    parse_section(root, what, registry, &["inputs"], inputs, errors, broken)
        .into_iter()
        .map(|(id, loc, fingerprint, inputs, spec)| TakerDef {
            id,
            loc,
            fingerprint,
            inputs,
            spec,
        })
        .collect()
}

/// Each case on its own, so one bad case does not hide the others' problems.
fn parse_tests(root: &Node, errors: &mut Vec<ConfigError>) -> Vec<TestCase> {
    let Some(node) = root.get("tests") else {
        return Vec::new();
    };
    match &node.kind {
        yaml::NodeKind::Seq(cases) => cases
            .iter()
            .filter_map(|case| collect(from_node(case), errors))
            .collect(),
        yaml::NodeKind::Null => Vec::new(),
        _ => {
            errors.push(ConfigError::at(
                node.loc,
                "`tests` must be a list of test cases",
            ));
            Vec::new()
        }
    }
}

fn parse_state(root: &Node, errors: &mut Vec<ConfigError>) -> Option<StateConfig> {
    let state: StateConfig = collect(from_node(root.get("state")?), errors)?;
    if state.interval.ms() <= 0 {
        errors.push(ConfigError::at(
            state.interval.loc,
            "state: `interval` must be longer than 0",
        ));
        return None;
    }
    Some(state)
}

fn parse_http(root: &Node, errors: &mut Vec<ConfigError>) -> Option<HttpConfig> {
    let http: HttpConfig = collect(from_node(root.get("http")?), errors)?;
    if let Err(message) = listen_address(&http.listen) {
        errors.push(ConfigError::at(http.listen.loc, format!("http: {message}")));
        return None;
    }
    Some(http)
}

fn parse_dead_letter(root: &Node, errors: &mut Vec<ConfigError>) -> Option<Box<dyn SinkSpec>> {
    let node = root.get("dead_letter")?;
    let raw = RawComponent {
        id: "dead_letter".into(),
        loc: node.loc,
        node,
        type_name: match node.get("type").map(from_node::<Spanned<String>>) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                errors.extend(e);
                return None;
            }
            None => {
                errors.push(ConfigError::at(
                    node.loc,
                    "dead_letter: missing field `type`",
                ));
                return None;
            }
        },
    };
    match parse_spec(&crate::sinks::REGISTRY, &raw, &[]) {
        Ok(spec) => Some(spec),
        Err(problems) => {
            errors.extend(
                problems
                    .into_iter()
                    .map(|e| e.in_component("sink", "dead_letter")),
            );
            None
        }
    }
}

//! A YAML tree that remembers where every node was written, and a serde
//! deserializer over it.
//!
//! serde-saphyr parses the text. We keep the result as a tree of [`Node`]s
//! (rather than deserializing the pipeline in one pass) so that each
//! component can be deserialized on its own: one typo in one operator is
//! reported together with every other problem in the file, each at its
//! `line:col`, instead of stopping the whole load at the first.

use super::error::{ConfigError, Loc, closest, did_you_mean};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_saphyr::Spanned as SaphyrSpanned;
use std::fmt;

/// One YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub loc: Loc,
    /// The value came from a `${VAR}`: it may be a secret, so error
    /// messages must not quote it.
    pub from_env: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are nodes so they keep their position.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The string value of a scalar, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Entries of a mapping, if it is one.
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A copy of this mapping without the given keys.
    pub fn without(&self, keys: &[&str]) -> Node {
        self.retain(|k| !keys.contains(&k))
    }

    /// A copy of this mapping with only the given keys.
    pub fn only(&self, keys: &[&str]) -> Node {
        self.retain(|k| keys.contains(&k))
    }

    /// A copy of this tree without the mapping entries whose keys were
    /// written at `locs`.
    fn without_keys_at(&self, locs: &[Loc]) -> Node {
        let kind = match &self.kind {
            NodeKind::Map(entries) => NodeKind::Map(
                (entries.iter())
                    .filter(|(k, _)| !locs.contains(&k.loc))
                    .map(|(k, v)| (k.clone(), v.without_keys_at(locs)))
                    .collect(),
            ),
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.iter().map(|n| n.without_keys_at(locs)).collect())
            }
            other => other.clone(),
        };
        Node { kind, ..*self }
    }

    /// The key (its position and name) of the outermost mapping entry
    /// whose value is, or holds, the node written at `loc`.
    fn entry_holding(&self, loc: Loc) -> Option<(Loc, String)> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find_map(|(k, v)| {
                let name = || (k.loc, k.as_str().unwrap_or_default().to_owned());
                match v.loc == loc {
                    true => Some(name()),
                    false => v.entry_holding(loc),
                }
            }),
            NodeKind::Seq(items) => items.iter().find_map(|n| n.entry_holding(loc)),
            _ => None,
        }
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) -> Node {
        let kind = match &self.kind {
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .iter()
                    .filter(|(k, _)| keep(k.as_str().unwrap_or_default()))
                    .cloned()
                    .collect(),
            ),
            other => other.clone(),
        };
        Node { kind, ..*self }
    }

    /// A hash of what the node says, not where: positions are left out and
    /// mapping keys sorted, so moving or reordering a component's lines in
    /// the file does not change it. With the floe version, since a new
    /// version may keep its state differently. Checkpoints use it to tell
    /// whether a component is still the one whose state they hold.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
        self.hash_into(&mut hasher);
        hasher.digest()
    }

    fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        match &self.kind {
            NodeKind::Null => h.update(b"n"),
            NodeKind::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
            NodeKind::Int(i) => {
                h.update(b"i");
                h.update(&i.to_le_bytes());
            }
            NodeKind::Float(f) => {
                h.update(b"d");
                h.update(&f.to_bits().to_le_bytes());
            }
            NodeKind::Str(text) => {
                h.update(b"s");
                h.update(&(text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
            NodeKind::Seq(items) => {
                h.update(b"[");
                items.iter().for_each(|item| item.hash_into(h));
                h.update(b"]");
            }
            NodeKind::Map(entries) => {
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                h.update(b"{");
                for (key, value) in sorted {
                    key.hash_into(h);
                    value.hash_into(h);
                }
                h.update(b"}");
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) | NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// Parses YAML text into a tree, then replaces `${VAR}` in string values
/// from the environment.
pub fn parse(text: &str) -> Result<Node, Vec<ConfigError>> {
    // YAML 1.2 booleans only: with YAML 1.1's, an aggregate named `n` or a
    // key `no` would silently become `false`.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let raw: SaphyrSpanned<RawNode> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let e = e.without_snippet();
            let loc = e.location().map(|l| Loc::new(l.line(), l.column()));
            let message = match e {
                // No option takes one; say so in the user's words.
                serde_saphyr::Error::NonFiniteFloat { value, .. } => {
                    format!("`{value}` is not a finite number")
                }
                e => strip_position(&e.to_string()),
            };
            vec![ConfigError::new(loc, message)]
        })?;
    let mut node = Node::from(raw);
    let mut errors = Vec::new();
    substitute_env(&mut node, &mut errors);
    if errors.is_empty() {
        Ok(node)
    } else {
        Err(errors)
    }
}

/// serde-saphyr appends "at line N, column M"; we print the position first.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
    .trim_start_matches("error: ")
    .to_string()
}

/// The tree as serde-saphyr gives it, before positions are flattened.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<SaphyrSpanned<RawNode>>),
    Map(Vec<(SaphyrSpanned<RawNode>, SaphyrSpanned<RawNode>)>),
}

impl From<SaphyrSpanned<RawNode>> for Node {
    fn from(raw: SaphyrSpanned<RawNode>) -> Self {
        let loc = Loc::new(raw.referenced.line(), raw.referenced.column());
        let kind = match raw.value {
            RawNode::Null => NodeKind::Null,
            RawNode::Bool(b) => NodeKind::Bool(b),
            RawNode::Int(i) => NodeKind::Int(i),
            RawNode::Float(f) => NodeKind::Float(f),
            RawNode::Str(s) => NodeKind::Str(s),
            RawNode::Seq(items) => NodeKind::Seq(items.into_iter().map(Node::from).collect()),
            RawNode::Map(entries) => NodeKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Node::from(k), Node::from(v)))
                    .collect(),
            ),
        };
        Node {
            kind,
            loc,
            from_env: false,
        }
    }
}

impl<'de> de::Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(RawNode::Map(entries))
    }
}

/// Replaces `${VAR}` in every string with the variable's value; `$${` is a
/// literal `${`. An unset variable is an error at the string's position.
fn substitute_env(node: &mut Node, errors: &mut Vec<ConfigError>) {
    match &mut node.kind {
        NodeKind::Str(s) if s.contains("${") => match interpolate(s, |v| std::env::var(v).ok()) {
            Ok(value) => {
                *s = value;
                node.from_env = true;
            }
            Err(message) => errors.push(ConfigError::new(Some(node.loc), message)),
        },
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| substitute_env(n, errors)),
        NodeKind::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, v)| substitute_env(v, errors)),
        _ => {}
    }
}

fn interpolate(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let name = &after[..end];
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Deserializes a value of type `T` from a node, reporting the position of
/// the innermost node at fault.
///
/// serde stops at the first error, so this collects more by trying again:
/// when a mapping had keys its struct does not know, they are all
/// reported; an error of another kind is reported and the entry it is in
/// left out; the rest is deserialized once more, until no error is left
/// or no entry holds it.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Vec<ConfigError>> {
    let mut errors = Vec::new();
    // A key taken for a typo of a field, or left out for its error,
    // leaves that field missing: a second report of the same mistake.
    let mut meant: Vec<String> = Vec::new();
    let mut node = std::borrow::Cow::Borrowed(node);
    loop {
        let e = match T::deserialize(node.as_ref()) {
            Ok(value) if errors.is_empty() => return Ok(value),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        let keys: Vec<Loc> = if e.unknown_keys.is_empty() {
            if !e
                .missing_field
                .is_some_and(|m| meant.iter().any(|k| k == m))
            {
                errors.push(ConfigError::new(e.loc, e.message));
            }
            let Some((key, name)) = e.loc.and_then(|loc| node.entry_holding(loc)) else {
                return Err(errors);
            };
            meant.push(name);
            vec![key]
        } else {
            let keys = e.unknown_keys.iter().map(|k| k.loc).collect();
            for key in e.unknown_keys {
                meant.extend(key.meant.map(String::from));
                errors.push(ConfigError::at(key.loc, key.message));
            }
            keys
        };
        let rest = node.without_keys_at(&keys);
        if rest == *node {
            // The keys are not in this tree (a type read them from one of
            // its own): nothing left to learn by trying again.
            return Err(errors);
        }
        node = std::borrow::Cow::Owned(rest);
    }
}

/// A deserialization error inside the tree.
#[derive(Debug)]
pub struct Error {
    loc: Option<Loc>,
    message: String,
    /// Made by `unknown_field`: the struct being read refuses keys it does
    /// not know.
    unknown_field: bool,
    /// Made by `missing_field`, for that field.
    missing_field: Option<&'static str>,
    /// When the error is about the keys a mapping's struct does not know:
    /// every one of them.
    unknown_keys: Vec<UnknownKey>,
}

/// A key of a mapping that its struct does not know.
#[derive(Debug)]
struct UnknownKey {
    loc: Loc,
    message: String,
    /// The field it is likely a typo of.
    meant: Option<&'static str>,
}

impl UnknownKey {
    fn new(key: &str, loc: Loc, fields: &'static [&'static str]) -> Self {
        let meant = closest(key, fields.iter().copied());
        let hint = meant.map_or(String::new(), |m| format!(", did you mean `{m}`?"));
        UnknownKey {
            loc,
            message: format!("unknown field `{key}`{hint}"),
            meant,
        }
    }
}

impl Error {
    /// Pins the error to `node` unless a deeper node already claimed it.
    fn at(mut self, node: &Node) -> Self {
        if self.loc.is_none() {
            self.loc = Some(node.loc);
            if node.from_env {
                // The message may quote the value, which may be a secret.
                self.message = "the value from the environment is not valid here".into();
            }
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            loc: None,
            message: msg.to_string(),
            unknown_field: false,
            missing_field: None,
            unknown_keys: Vec::new(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error {
            unknown_field: true,
            ..Error::custom(UnknownKey::new(field, Loc::default(), expected).message)
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = did_you_mean(variant, expected.iter().copied());
        let hint = if hint.is_empty() {
            format!(", expected one of: {}", expected.join(", "))
        } else {
            hint
        };
        Error::custom(format!("unknown value `{variant}`{hint}"))
    }

    fn missing_field(field: &'static str) -> Self {
        Error {
            missing_field: Some(field),
            ..Error::custom(format!("missing field `{field}`"))
        }
    }
}

/// Name of the newtype struct through which [`super::Spanned`] asks for a
/// node's position.
pub(super) const SPANNED: &str = "$floe::Spanned";

impl<'de> Deserializer<'de> for &Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
            }),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Values from `${VAR}` are strings; accept them where a bool is asked.
        match &self.kind {
            NodeKind::Str(s) if s == "true" => visitor.visit_bool(true),
            NodeKind::Str(s) if s == "false" => visitor.visit_bool(false),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Str(s) => match s.trim().parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(self.expected("a number")),
            },
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Str(s) => match s.trim().parse::<i64>() {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => Err(self.expected("an integer")),
            },
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Bool(b) => visitor.visit_string(b.to_string()),
            NodeKind::Int(i) => visitor.visit_string(i.to_string()),
            NodeKind::Float(f) => visitor.visit_string(f.to_string()),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Str(s) => visitor.visit_enum(UnitVariant(s)),
            _ => Err(self.expected("a name")),
        }
        .map_err(|e| e.at(self))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED {
            return visitor.visit_seq(SpannedDe {
                node: self,
                step: 0,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    /// Presents the keys `fields` does not name first: a struct that
    /// refuses unknown keys then fails at the first of them, and the error
    /// can name them all, each at its position.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let NodeKind::Map(entries) = &self.kind else {
            return self.deserialize_any(visitor);
        };
        let known = |(k, _): &&(Node, Node)| k.as_str().is_none_or(|k| fields.contains(&k));
        let (known, unknown): (Vec<_>, Vec<_>) = entries.iter().partition(known);
        let Some((first, _)) = unknown.first() else {
            return self.deserialize_any(visitor);
        };
        let entries = unknown.iter().chain(&known).copied();
        let result = visitor.visit_map(MapDe {
            entries: entries.collect::<Vec<_>>().into_iter(),
            value: None,
        });
        result.map_err(|e| {
            if !(e.unknown_field && e.loc == Some(first.loc)) {
                return e.at(self);
            }
            let key = |(k, _): &&(Node, Node)| {
                UnknownKey::new(k.as_str().unwrap_or_default(), k.loc, fields)
            };
            Error {
                unknown_keys: unknown.iter().map(key).collect(),
                ..e
            }
        })
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_i64(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
}

impl Node {
    fn expected(&self, what: &str) -> Error {
        de::Error::custom(format!("expected {what}, found {}", self.type_name()))
    }
}

struct SeqDe<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|n| seed.deserialize(n)).transpose()
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<&'a (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key).map(Some).map_err(|e| e.at(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value requested before key"))?;
        seed.deserialize(value).map_err(|e| e.at(value))
    }
}

/// Feeds a [`super::Spanned`]: line, column, then the value.
struct SpannedDe<'a> {
    node: &'a Node,
    step: u8,
}

impl<'de> SeqAccess<'de> for SpannedDe<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.step += 1;
        let value = match self.step {
            1 => seed.deserialize(self.node.loc.line.into_deserializer())?,
            2 => seed.deserialize(self.node.loc.col.into_deserializer())?,
            3 => seed.deserialize(self.node)?,
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

struct UnitVariant<'a>(&'a str);

impl<'de> EnumAccess<'de> for UnitVariant<'_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let de: de::value::StrDeserializer<Error> = self.0.into_deserializer();
        Ok((seed.deserialize(de)?, self))
    }
}

impl<'de> VariantAccess<'de> for UnitVariant<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, Error> {
        Err(de::Error::custom("expected a plain name"))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("expected a plain name"))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom("expected a plain name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        threshold: f64,
        #[serde(default)]
        name: Option<String>,
    }

    fn parse_one(text: &str) -> Node {
        parse(text).unwrap()
    }

    /// The one error deserializing `T` from `node` gives.
    fn only_error<T: DeserializeOwned + fmt::Debug>(node: &Node) -> ConfigError {
        match from_node::<T>(node).unwrap_err().as_slice() {
            [one] => one.clone(),
            more => panic!("{more:?}"),
        }
    }

    /// Every error deserializing `T` from `text` gives, as `line:col: message`.
    fn errors<T: DeserializeOwned + fmt::Debug>(text: &str) -> Vec<String> {
        let errors = from_node::<T>(&parse_one(text)).unwrap_err();
        (errors.iter())
            .map(|e| {
                let loc = e.loc.unwrap_or_default();
                format!("{}:{}: {}", loc.line, loc.col, e.message)
            })
            .collect()
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let root = parse_one("a:\n  b: [1, x]\n");
        let b = root.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.loc, Loc::new(2, 6));
        let NodeKind::Seq(items) = &b.kind else {
            panic!()
        };
        assert_eq!(items[1].loc, Loc::new(2, 10));
    }

    #[test]
    fn unknown_field_points_at_the_key_with_a_hint() {
        let root = parse_one("threshold: 1\nthresold: 2\n");
        let err = only_error::<Sample>(&root);
        assert_eq!(err.loc, Some(Loc::new(2, 1)));
        assert_eq!(
            err.message,
            "unknown field `thresold`, did you mean `threshold`?"
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let root = parse_one("threshold: [1]\n");
        let err = only_error::<Sample>(&root);
        assert_eq!(err.loc, Some(Loc::new(1, 12)));
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let root = parse_one("x:\n  name: a\n");
        let err = only_error::<Sample>(root.get("x").unwrap());
        assert_eq!(err.message, "missing field `threshold`");
        assert_eq!(err.loc, Some(Loc::new(2, 3)));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Sample,
        #[serde(default)]
        size: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Lenient {
        threshold: f64,
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_place_and_then_the_rest_is_checked() {
        assert_eq!(
            errors::<Sample>("thresold: 1\nname: a\nclearbelow: 2\n"),
            [
                "1:1: unknown field `thresold`, did you mean `threshold`?",
                "3:1: unknown field `clearbelow`",
            ],
            "a key taken for a typo of a missing field does not report it missing too"
        );
        assert_eq!(
            errors::<Outer>("siz: 1\ninner: {threshold: x, nme: a, colour: red}\nsize: -1\n"),
            [
                "1:1: unknown field `siz`, did you mean `size`?",
                "2:23: unknown field `nme`, did you mean `name`?",
                "2:31: unknown field `colour`",
                "2:20: expected a number, found a string",
                "3:7: invalid value: integer `-1`, expected u32",
            ]
        );
        assert_eq!(
            errors::<Sample>("name: a\n"),
            ["1:1: missing field `threshold`"]
        );
        let lenient: Lenient = from_node(&parse_one("threshold: 1\nother: 2\n")).unwrap();
        assert_eq!(lenient.threshold, 1.0);
    }

    #[test]
    fn only_yaml_1_2_booleans_are_booleans() {
        let root = parse_one("a: yes\nn: 1\nb: true\n");
        assert_eq!(root.get("a").unwrap().kind, NodeKind::Str("yes".into()));
        assert!(root.get("n").is_some());
        assert_eq!(root.get("b").unwrap().kind, NodeKind::Bool(true));
    }

    #[test]
    fn interpolates_environment_variables() {
        let env = |v: &str| (v == "HOST").then(|| "broker".to_string());
        assert_eq!(
            interpolate("mqtt://${HOST}:1883", env).unwrap(),
            "mqtt://broker:1883"
        );
        assert_eq!(
            interpolate("$${HOST} costs $5", env).unwrap(),
            "${HOST} costs $5"
        );
        assert_eq!(
            interpolate("${NOPE}", env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn values_from_the_environment_are_not_quoted_in_errors() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("FLOE_TEST_SECRET_THRESHOLD", "hunter2") };
        let root = parse("threshold: ${FLOE_TEST_SECRET_THRESHOLD}\n").unwrap();
        let err = only_error::<Sample>(&root);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        unsafe { std::env::set_var("FLOE_TEST_SECRET_THRESHOLD", "4.5") };
        let root = parse("threshold: ${FLOE_TEST_SECRET_THRESHOLD}\n").unwrap();
        assert_eq!(from_node::<Sample>(&root).unwrap().threshold, 4.5);
    }
}

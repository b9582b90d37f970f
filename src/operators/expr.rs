//! Conditions on event fields, as `filter` uses them, and numbers computed
//! from them, as a `threshold`'s limits are (`setpoint_c + 2`).
//!
//! ```text
//! kind == "reefer" && temperature_c > setpoint_c + 2
//! door_open or not exists(lat)
//! key in ["truck-0001", "truck-0002"] && speed_kmh >= 10
//! ```
//!
//! - Values: numbers (`4`, `-3.5`, `1e3`), strings in double or single
//!   quotes (`\"`, `\'`, `\\`, `\n`, `\t` escapes), `true`, `false`.
//! - Fields by name (`temperature_c`, dotted names like `engine.temp`), or
//!   in backquotes for any other name (`` `temp (C)` ``). `key` is the
//!   event's entity key; write `` `key` `` for a field called key.
//! - Operators, loosest first: `||` / `or`; `&&` / `and`; `!` / `not`;
//!   `==` `!=` `<` `<=` `>` `>=`, `x in [a, b]`, `x not in [a, b]`;
//!   `+` `-`; `*` `/` `%`; unary `-`. Parentheses group.
//! - `exists(field)` is true when the event carries the field.
//! - A bare field is a condition: true when it holds the boolean `true`.
//! - Parentheses, `not` and unary `-` nest at most 64 deep (`MAX_DEPTH`);
//!   `&&`, `||` and arithmetic chains are lists and may be any length.
//!
//! Missing fields and mismatched types follow SQL's rule for NULL: a
//! comparison with a missing field, or between a number and a string, is
//! *unknown*, and so is `not` of unknown; `and` is false if either side is
//! false, `or` true if either side is true. An event passes only when the
//! whole condition is true, so `temperature_c != 4` does not pass events
//! without `temperature_c`. Arithmetic on a missing or non-numeric value is
//! unknown too.

use super::BuildContext;
use crate::config::{ConfigError, Loc, Spanned, did_you_mean};
use crate::event::{Event, FieldId, Key, Value};

/// Deepest nesting of parentheses, `not` and unary `-` accepted. Parsing,
/// binding and evaluation recurse once per level, so this bounds their
/// stack; chains of `&&`, `||` and arithmetic are lists, however long, and
/// do not nest.
const MAX_DEPTH: usize = 64;

/// A parse error and the character offset it was found at.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Key,
    /// A field; `id` is filled in by [`Expr::bind`].
    Field {
        name: String,
        id: FieldId,
    },
    Exists {
        name: String,
        id: FieldId,
    },
    Not(Box<Expr>),
    /// Two or more terms.
    And(Vec<Expr>),
    /// Two or more terms.
    Or(Vec<Expr>),
    Compare(Cmp, Box<Expr>, Box<Expr>),
    /// `first op1 x1 op2 x2 ...`, applied left to right: `a - b - c` is
    /// `(a - b) - c`. One level of precedence (`+ -` or `* / %`) per chain.
    Arith {
        first: Box<Expr>,
        rest: Vec<(Arith, Expr)>,
    },
    Neg(Box<Expr>),
    /// `x in [...]`; `negated` for `not in`.
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A value during evaluation; strings borrow from the event.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val<'a> {
    Num(f64),
    Str(&'a str),
    Bool(bool),
    Unknown,
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
            end: text.chars().count(),
        };
        let expr = parser.or()?;
        match parser.peek() {
            None => Ok(expr),
            Some(t) => Err(parser.error_at(t.offset, format!("unexpected {}", t.kind.describe()))),
        }
    }

    /// Parses an expression written in a pipeline file; an error points
    /// into it and starts with `what` (`bad condition: ...`).
    pub fn parse_spanned(text: &Spanned<String>, what: &str) -> Result<Expr, ConfigError> {
        Expr::parse(text).map_err(|e| {
            // Positions point into the expression; for a quoted YAML string
            // they land one column early, which is close enough to see.
            let loc = Loc {
                line: text.loc.line,
                col: text.loc.col + e.offset as u32,
            };
            ConfigError::at(loc, format!("{what}: {}", e.message))
        })
    }

    /// Parses a number written as a constant, a field or arithmetic over
    /// fields; a condition or a string is an error.
    pub fn parse_number(text: &Spanned<String>, what: &str) -> Result<Expr, ConfigError> {
        match Expr::parse_spanned(text, what)? {
            expr @ (Expr::Num(_) | Expr::Field { .. } | Expr::Arith { .. } | Expr::Neg(_)) => {
                Ok(expr)
            }
            _ => Err(ConfigError::at(
                text.loc,
                format!(
                    "{what}: `{}` is not a number, a field or arithmetic over fields (like `setpoint_c + 2`)",
                    text.value
                ),
            )),
        }
    }

    /// Names of the fields the expression reads.
    pub fn fields(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Field { name, .. } | Expr::Exists { name, .. } = e {
                names.push(name.as_str());
            }
        });
        names
    }

    /// Resolves field names to the pipeline's field ids.
    pub fn bind(&mut self, ctx: &mut BuildContext) {
        match self {
            Expr::Field { name, id } | Expr::Exists { name, id } => *id = ctx.field(name),
            Expr::Not(a) | Expr::Neg(a) => a.bind(ctx),
            Expr::And(terms) | Expr::Or(terms) => terms.iter_mut().for_each(|e| e.bind(ctx)),
            Expr::Compare(_, a, b) => {
                a.bind(ctx);
                b.bind(ctx);
            }
            Expr::Arith { first, rest } => {
                first.bind(ctx);
                rest.iter_mut().for_each(|(_, e)| e.bind(ctx));
            }
            Expr::In { value, list, .. } => {
                value.bind(ctx);
                list.iter_mut().for_each(|e| e.bind(ctx));
            }
            Expr::Num(_) | Expr::Str(_) | Expr::Bool(_) | Expr::Key => {}
        }
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Not(a) | Expr::Neg(a) => a.visit(f),
            Expr::And(terms) | Expr::Or(terms) => terms.iter().for_each(|e| e.visit(f)),
            Expr::Compare(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Arith { first, rest } => {
                first.visit(f);
                rest.iter().for_each(|(_, e)| e.visit(f));
            }
            Expr::In { value, list, .. } => {
                value.visit(f);
                list.iter().for_each(|e| e.visit(f));
            }
            _ => {}
        }
    }

    /// Whether the condition holds for `event` (unknown counts as no).
    pub fn matches(&self, event: &Event) -> bool {
        self.eval(event) == Val::Bool(true)
    }

    /// The number the expression gives for `event`; `None` when it gives
    /// none (a field is missing or not a number).
    pub fn number(&self, event: &Event) -> Option<f64> {
        match self.eval(event) {
            Val::Num(n) => Some(n),
            _ => None,
        }
    }

    /// The number of an expression that reads no field (`4`, `-15`).
    pub fn constant(&self) -> Option<f64> {
        match self.fields().is_empty() {
            true => self.number(&Event::new(Key::default(), 0)),
            false => None,
        }
    }

    fn eval<'a>(&'a self, event: &'a Event) -> Val<'a> {
        match self {
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(s),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Key => Val::Str(&event.key),
            Expr::Field { id, .. } => match event.get(*id) {
                Some(Value::Num(n)) => Val::Num(*n),
                Some(Value::Str(s)) => Val::Str(s),
                Some(Value::Bool(b)) => Val::Bool(*b),
                None => Val::Unknown,
            },
            Expr::Exists { id, .. } => Val::Bool(event.get(*id).is_some()),
            Expr::Not(a) => match a.eval(event) {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Unknown,
            },
            // One false term decides an `and`, one true term an `or`;
            // otherwise an unknown term leaves the whole unknown.
            Expr::And(terms) => connective(terms, event, false),
            Expr::Or(terms) => connective(terms, event, true),
            Expr::Compare(op, a, b) => compare(*op, a.eval(event), b.eval(event)),
            Expr::Arith { first, rest } => {
                let mut acc = first.eval(event);
                for (op, operand) in rest {
                    acc = match (acc, operand.eval(event)) {
                        (Val::Num(x), Val::Num(y)) => arith(*op, x, y),
                        _ => return Val::Unknown,
                    };
                }
                acc
            }
            Expr::Neg(a) => match a.eval(event) {
                Val::Num(x) => Val::Num(-x),
                _ => Val::Unknown,
            },
            Expr::In {
                value,
                list,
                negated,
            } => {
                let v = value.eval(event);
                let mut verdict = Val::Bool(false);
                for item in list {
                    match compare(Cmp::Eq, v, item.eval(event)) {
                        Val::Bool(true) => {
                            verdict = Val::Bool(true);
                            break;
                        }
                        Val::Unknown => verdict = Val::Unknown,
                        _ => {}
                    }
                }
                match (verdict, negated) {
                    (Val::Bool(b), true) => Val::Bool(!b),
                    (v, _) => v,
                }
            }
        }
    }
}

/// `and` (`decisive` false) or `or` (`decisive` true) of `terms` in SQL's
/// three-valued logic: the decisive value if any term has it, else unknown
/// if any term is not a boolean, else the other value.
fn connective<'a>(terms: &'a [Expr], event: &'a Event, decisive: bool) -> Val<'a> {
    let mut verdict = Val::Bool(!decisive);
    for term in terms {
        match term.eval(event) {
            Val::Bool(b) if b == decisive => return Val::Bool(decisive),
            Val::Bool(_) => {}
            _ => verdict = Val::Unknown,
        }
    }
    verdict
}

fn compare(op: Cmp, a: Val, b: Val) -> Val<'static> {
    let ordering = match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(&y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) if matches!(op, Cmp::Eq | Cmp::Ne) => Some(x.cmp(&y)),
        // A boolean field that an operator reads as a number arrives as
        // 1 or 0; `door_open == false` must still mean what it says.
        (Val::Num(x), Val::Bool(y)) | (Val::Bool(y), Val::Num(x))
            if matches!(op, Cmp::Eq | Cmp::Ne) =>
        {
            x.partial_cmp(&f64::from(u8::from(y)))
        }
        _ => None,
    };
    let Some(ordering) = ordering else {
        return Val::Unknown;
    };
    Val::Bool(match op {
        Cmp::Eq => ordering.is_eq(),
        Cmp::Ne => ordering.is_ne(),
        Cmp::Lt => ordering.is_lt(),
        Cmp::Le => ordering.is_le(),
        Cmp::Gt => ordering.is_gt(),
        Cmp::Ge => ordering.is_ge(),
    })
}

fn arith(op: Arith, x: f64, y: f64) -> Val<'static> {
    let v = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    };
    if v.is_finite() {
        Val::Num(v)
    } else {
        Val::Unknown
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Num(f64),
    Str(String),
    Ident(String),
    /// A backquoted field name.
    Quoted(String),
    Op(&'static str),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Num(n) => format!("number {n}"),
            Kind::Str(s) => format!("string {s:?}"),
            Kind::Ident(s) | Kind::Quoted(s) => format!("`{s}`"),
            Kind::Op(op) => format!("`{op}`"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    /// Character offset in the condition.
    offset: usize,
}

const OPERATORS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]",
    ",",
];

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let error = |message: String| ParseError {
            offset: start,
            message,
        };
        let kind = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            Kind::Num(
                literal
                    .parse()
                    .map_err(|_| error(format!("bad number `{literal}`")))?,
            )
        } else if c == '"' || c == '\'' {
            let (value, end) =
                string(&chars, i).ok_or_else(|| error("unterminated string".into()))?;
            i = end;
            Kind::Str(value)
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .ok_or_else(|| error("unterminated `".into()))?;
            let name: String = chars[i + 1..i + 1 + end].iter().collect();
            i += end + 2;
            Kind::Quoted(name)
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            Kind::Ident(chars[start..i].iter().collect())
        } else {
            let op = OPERATORS
                .iter()
                .find(|op| op.chars().zip(&chars[i..]).filter(|(a, b)| a == *b).count() == op.len())
                .ok_or_else(|| error(format!("unexpected character `{c}`")))?;
            i += op.len();
            Kind::Op(op)
        };
        tokens.push(Token {
            kind,
            offset: start,
        });
    }
    Ok(tokens)
}

/// A quoted string starting at `chars[start]`; returns it and the index
/// after its closing quote.
fn string(chars: &[char], start: usize) -> Option<(String, usize)> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match *chars.get(i)? {
            c if c == quote => return Some((value, i + 1)),
            '\\' => {
                value.push(match *chars.get(i + 1)? {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                i += 2;
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Offset of the end of the text, for "expected ... at the end".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn error_at(&self, offset: usize, message: String) -> ParseError {
        ParseError { offset, message }
    }

    fn error(&self, expected: &str) -> ParseError {
        let found = self
            .peek()
            .map_or("the end".to_string(), |t| t.kind.describe());
        self.error_at(self.offset(), format!("expected {expected}, found {found}"))
    }

    /// Consumes the next token if it is operator or keyword `word`.
    fn eat(&mut self, word: &str) -> bool {
        let hit = match self.peek().map(|t| &t.kind) {
            Some(Kind::Op(op)) => *op == word,
            Some(Kind::Ident(id)) => id == word,
            _ => false,
        };
        self.pos += hit as usize;
        hit
    }

    fn expect(&mut self, word: &str) -> Result<(), ParseError> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(self.error(&format!("`{word}`")))
        }
    }

    /// Parses one level deeper, opened by the token just consumed.
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let opener = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i));
            return Err(self.error_at(
                opener.map_or(self.end, |t| t.offset),
                format!(
                    "too deeply nested (more than {MAX_DEPTH} levels of parentheses, `not` or unary `-`)"
                ),
            ));
        }
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.list(["||", "or"], Expr::Or, Self::and)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.list(["&&", "and"], Expr::And, Self::not)
    }

    /// `term (word term)*` as one list of terms, however long, rather than
    /// nested pairs that evaluation would recurse through.
    fn list(
        &mut self,
        words: [&str; 2],
        join: fn(Vec<Expr>) -> Expr,
        term: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut terms = vec![term(self)?];
        while words.iter().any(|word| self.eat(word)) {
            terms.push(term(self)?);
        }
        Ok(match terms.len() {
            1 => terms.swap_remove(0),
            _ => join(terms),
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat("!") || self.eat("not") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.not()?))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.sum()?;
        const CMPS: [(&str, Cmp); 6] = [
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        for (word, op) in CMPS {
            if self.eat(word) {
                return Ok(Expr::Compare(op, Box::new(left), Box::new(self.sum()?)));
            }
        }
        let negated = matches!(self.peek().map(|t| &t.kind), Some(Kind::Ident(w)) if w == "not");
        if negated {
            self.pos += 1;
            if !self.eat("in") {
                return Err(self.error("`in` after `not`"));
            }
        } else if !self.eat("in") {
            return Ok(left);
        }
        self.expect("[")?;
        let mut list = vec![self.sum()?];
        while self.eat(",") {
            list.push(self.sum()?);
        }
        self.expect("]")?;
        Ok(Expr::In {
            value: Box::new(left),
            list,
            negated,
        })
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        const OPS: &[(&str, Arith)] = &[("+", Arith::Add), ("-", Arith::Sub)];
        self.chain(OPS, Self::product)
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        const OPS: &[(&str, Arith)] = &[("*", Arith::Mul), ("/", Arith::Div), ("%", Arith::Rem)];
        self.chain(OPS, Self::unary)
    }

    /// `operand (op operand)*` for the operators of one precedence level.
    fn chain(
        &mut self,
        ops: &[(&str, Arith)],
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(&(_, op)) = ops.iter().find(|(word, _)| self.eat(word)) {
            rest.push((op, operand(self)?));
        }
        Ok(match rest.is_empty() {
            true => first,
            false => Expr::Arith {
                first: Box::new(first),
                rest,
            },
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat("-") {
            return self.nested(|p| Ok(Expr::Neg(Box::new(p.unary()?))));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error("a value"));
        };
        self.pos += 1;
        match token.kind {
            Kind::Num(n) => Ok(Expr::Num(n)),
            Kind::Str(s) => Ok(Expr::Str(s)),
            Kind::Quoted(name) => Ok(Expr::Field { name, id: 0 }),
            Kind::Op("(") => {
                let inner = self.nested(|p| p.or())?;
                self.expect(")")?;
                Ok(inner)
            }
            Kind::Ident(word) => self.word(word, token.offset),
            other => Err(self.error_at(
                token.offset,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    /// An identifier: a keyword, a function call or a field.
    fn word(&mut self, word: String, offset: usize) -> Result<Expr, ParseError> {
        match word.as_str() {
            "true" => return Ok(Expr::Bool(true)),
            "false" => return Ok(Expr::Bool(false)),
            "key" => return Ok(Expr::Key),
            "and" | "or" | "not" | "in" => {
                return Err(self.error_at(offset, format!("expected a value, found `{word}`")));
            }
            _ => {}
        }
        if !self.eat("(") {
            return Ok(Expr::Field { name: word, id: 0 });
        }
        if word != "exists" {
            let hint = did_you_mean(&word, ["exists"]);
            return Err(self.error_at(offset, format!("unknown function `{word}`{hint}")));
        }
        let name = match self.peek().map(|t| t.kind.clone()) {
            Some(Kind::Ident(name) | Kind::Quoted(name)) => name,
            _ => return Err(self.error("a field name")),
        };
        self.pos += 1;
        self.expect(")")?;
        Ok(Expr::Exists { name, id: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Schema;

    /// Parses, binds against a schema and evaluates on an event of `fields`.
    fn check(condition: &str, fields: &[(&str, Value)]) -> bool {
        let mut expr = Expr::parse(condition).unwrap_or_else(|e| panic!("{condition}: {e:?}"));
        let mut schema = Schema::default();
        expr.bind(&mut BuildContext {
            pipeline: "p",
            id: "f",
            schema: &mut schema,
            firing: &Default::default(),
        });
        let mut event = Event::new("truck-1".into(), 0);
        for (name, value) in fields {
            let id = schema.intern(name);
            event.set(id, value.clone());
        }
        expr.matches(&event)
    }

    fn num(v: f64) -> Value {
        Value::Num(v)
    }

    fn text(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[test]
    fn comparisons_and_arithmetic() {
        let t = [("t", num(5.0)), ("s", num(2.0)), ("k", text("reefer"))];
        for yes in [
            "t > 4",
            "t >= 5",
            "t == 5",
            "t != 4",
            "t < 6",
            "t <= 5",
            "t > s + 2",
            "t == s * 2 + 1",
            "t % 2 == 1",
            "-t < 0",
            "t / 2 == 2.5",
            "k == 'reefer'",
            "k == \"reefer\"",
            "k < \"zebra\"",
            "t - s - 1 == 2",
            "2 + 3 * 2 == 8",
            "(2 + 3) * 2 == 10",
            "1e1 == 10",
            ".5 < 1",
        ] {
            assert!(check(yes, &t), "{yes}");
        }
        for no in ["t > 5", "t != 5", "k == 'frozen'", "t / 0 == 1"] {
            assert!(!check(no, &t), "{no}");
        }
    }

    #[test]
    fn logic_precedence_and_keywords() {
        let t = [("a", Value::Bool(true)), ("b", Value::Bool(false))];
        assert!(check("a || b && b", &t), "&& binds tighter than ||");
        assert!(!check("(a || b) && b", &t));
        assert!(check("not b and a", &t));
        assert!(check("!b", &t));
        assert!(check("a", &t), "a bare boolean field is a condition");
        // A boolean another operator reads as a number arrives as 1 or 0.
        let numeric = [("a", Value::Num(1.0)), ("b", Value::Num(0.0))];
        assert!(check("a == true && b == false && b != true", &numeric));
        assert!(!check("a == false", &numeric));
        assert!(!check("b", &t));
        assert!(check("true && !false", &t));
    }

    #[test]
    fn membership_exists_and_key() {
        let t = [("kind", text("frozen")), ("n", num(3.0))];
        assert!(check("kind in ['reefer', 'frozen']", &t));
        assert!(check("kind not in ['reefer']", &t));
        assert!(check("n in [1, 2, 3]", &t));
        assert!(check("exists(kind) && !exists(lat)", &t));
        assert!(check("key == 'truck-1'", &t));
        assert!(check("key in ['truck-1', 'truck-2']", &t));
    }

    #[test]
    fn missing_fields_and_mismatched_types_are_unknown() {
        let t = [("n", num(3.0)), ("s", text("x"))];
        for no in [
            "missing > 1",
            "missing != 1",
            "!(missing > 1)",
            "missing",
            "!missing",
            "n == 'x'",
            "s > 1",
            "missing + 1 > 0",
            "missing in [1]",
            "missing not in [1]",
        ] {
            assert!(!check(no, &t), "{no}");
        }
        assert!(
            check("missing > 1 || n == 3", &t),
            "true or unknown is true"
        );
        assert!(!check("missing > 1 && n == 3", &t));
    }

    /// The three-valued truth of `condition`: `None` for unknown.
    fn truth(condition: &str, fields: &[(&str, Value)]) -> Option<bool> {
        match (
            check(condition, fields),
            check(&format!("not ({condition})"), fields),
        ) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    #[test]
    fn and_or_lists_keep_three_valued_logic() {
        let t = [("n", num(3.0))];
        for (condition, expected) in [
            ("n == 3 && n > 1 && n < 5", Some(true)),
            ("n == 3 && missing > 1 && n < 5", None),
            ("n == 3 && missing > 1 && n > 5", Some(false)),
            ("missing > 1 && n > 5 && missing < 1", Some(false)),
            ("n > 5 || missing > 1 || n < 1", None),
            ("n > 5 || missing > 1 || n == 3", Some(true)),
            ("n > 5 || n < 1 || n == 4", Some(false)),
            ("(n > 5 || n < 1) || (n == 3 && missing > 1)", None),
            ("(n == 3 && n > 1) && (n < 5 && missing > 1)", None),
            ("n == 3 && (n > 5 || n == 3) && !(n < 1)", Some(true)),
        ] {
            assert_eq!(truth(condition, &t), expected, "{condition}");
        }
    }

    /// Long chains are lists, not nested pairs: they parse, bind, evaluate,
    /// clone and drop on the test thread's default stack.
    #[test]
    fn twenty_thousand_terms_evaluate_without_deep_recursion() {
        let t = [("a", num(1.0)), ("b", num(2.0))];
        let terms = |term: &str, sep: &str| vec![term; 20_000].join(sep);
        let all = terms("a == 1", " && ");
        assert_eq!(truth(&all, &t), Some(true));
        assert_eq!(truth(&format!("{all} && b == 3"), &t), Some(false));
        assert_eq!(truth(&format!("{all} && missing > 0"), &t), None);
        let any = terms("a == 2", " || ");
        assert_eq!(truth(&any, &t), Some(false));
        assert_eq!(truth(&format!("{any} or b == 2"), &t), Some(true));
        let sum = terms("a", " + ");
        assert_eq!(truth(&format!("{sum} == 20000"), &t), Some(true));
        assert_eq!(
            truth(&format!("{sum} - b * 2 * a == 19996"), &t),
            Some(true)
        );
        assert_eq!(truth(&format!("{sum} + missing > 0"), &t), None);
        let expr = Expr::parse(&all).unwrap();
        assert_eq!(expr.fields().len(), 20_000);
        assert_eq!(expr.clone(), expr);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_at_its_offset() {
        let parens = |n: usize| "(".repeat(n) + "a" + &")".repeat(n);
        assert!(Expr::parse(&parens(MAX_DEPTH)).is_ok());
        let message = "too deeply nested (more than 64 levels of parentheses, `not` or unary `-`)";
        for (text, offset) in [
            (parens(MAX_DEPTH + 1), MAX_DEPTH),
            (parens(10_000), MAX_DEPTH),
            ("not ".repeat(10_000) + "a", 4 * MAX_DEPTH),
            ("!".repeat(10_000) + "a", MAX_DEPTH),
            ("-".repeat(10_000) + "1 > 0", MAX_DEPTH),
            ("(not ".repeat(5_000) + "a", 5 * MAX_DEPTH / 2),
        ] {
            let err = Expr::parse(&text).unwrap_err();
            assert_eq!((err.offset, err.message.as_str()), (offset, message));
        }
    }

    #[test]
    fn strings_escapes_and_odd_field_names() {
        assert!(check(r#"s == "say \"hi\"""#, &[("s", text("say \"hi\""))]));
        assert!(check(r"s == 'it\'s'", &[("s", text("it's"))]));
        assert!(check("`temp (C)` > 1", &[("temp (C)", num(2.0))]));
        assert!(check("engine.temp > 1", &[("engine.temp", num(2.0))]));
        assert!(check("`key` == 'k'", &[("key", text("k"))]));
    }

    #[test]
    fn reports_the_fields_read() {
        let e = Expr::parse("a > 1 && exists(b) || key == 'x' || `c d` in [1]").unwrap();
        assert_eq!(e.fields(), ["a", "b", "c d"]);
    }

    #[test]
    fn parse_errors_name_the_offset() {
        let cases = [
            ("t >", 3, "expected a value, found the end"),
            ("(t > 1", 6, "expected `)`, found the end"),
            ("t > 1)", 5, "unexpected `)`"),
            (
                "exist(t)",
                0,
                "unknown function `exist`, did you mean `exists`?",
            ),
            ("t > 'open", 4, "unterminated string"),
            ("t # 1", 2, "unexpected character `#`"),
            ("t in 1", 5, "expected `[`, found number 1"),
            ("t not 1", 6, "expected `in` after `not`, found number 1"),
            ("1.2.3 > 1", 0, "bad number `1.2.3`"),
            ("and > 1", 0, "expected a value, found `and`"),
        ];
        for (text, offset, message) in cases {
            let err = Expr::parse(text).unwrap_err();
            assert_eq!(
                (err.offset, err.message.as_str()),
                (offset, message),
                "{text}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        let negs = "-".repeat(10_000) + "1";
        let long = "a == 1 && ".repeat(2_000) + "b";
        for text in [
            "",
            "(((",
            "\"",
            "'",
            "`",
            "1 +",
            "&&",
            "in [",
            "[1,2]",
            "exists(",
            "exists()",
            "é > ü",
            "🚚 == 1",
            "a in [1,",
            "not",
            "!!!!",
            "1e",
            "1e+",
            ")",
            ",",
            deep.as_str(),
            negs.as_str(),
            "\\",
            "a == 'x\\",
        ] {
            let _ = Expr::parse(text);
        }
        assert!(Expr::parse(&deep).is_err(), "nesting is capped");
        assert!(Expr::parse(&long).is_ok(), "long flat conditions are fine");
    }
}

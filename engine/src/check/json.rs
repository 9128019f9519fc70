//! Jepsen-shaped JSON lines: one object per event, written and parsed by hand (the engine
//! does not depend on serde).
//!
//! The row shape is described in the [`check`](super) module docs.

use std::fmt::Write as _;

use super::history::{Call, History, Op, Outcome};

/// The `error` field of a compare-and-set that did not find the expected value.
pub const CAS_MISMATCH: &str = "cas-mismatch";

/// One row of a JSON-lines history, with its time so that a caller can merge rows of other
/// workloads (checkouts, say) in time order before writing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonRow {
    /// The row's time.
    pub time: u64,
    /// The JSON object, without a line break.
    pub line: String,
}

/// A line of a JSON-lines history that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("history line {line}: {message}")]
pub struct ParseError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Appends `bytes` as a JSON value: a string if they are UTF-8, else an array of numbers.
pub fn push_json_bytes(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => push_json_string(out, text),
        Err(_) => {
            out.push('[');
            for (index, byte) in bytes.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{byte}");
            }
            out.push(']');
        }
    }
}

/// Appends `text` as a JSON string, escaped.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_optional(out: &mut String, value: Option<&[u8]>) {
    match value {
        Some(bytes) => push_json_bytes(out, bytes),
        None => out.push_str("null"),
    }
}

/// The row of one event of `op`: `row_type` is `invoke`, `ok`, `fail` or `info`.
fn row(op: &Op, row_type: &str, time: u64) -> JsonRow {
    let mut line = String::with_capacity(96);
    let _ = write!(
        line,
        "{{\"process\":{},\"type\":\"{row_type}\",\"f\":\"{}\",\"key\":",
        op.process,
        op.call.name()
    );
    push_json_bytes(&mut line, &op.key);
    line.push_str(",\"value\":");
    match (&op.call, &op.outcome) {
        (Call::Read, Outcome::ReadOk(value)) if row_type == "ok" => {
            push_optional(&mut line, value.as_deref());
        }
        (Call::Read, _) => line.push_str("null"),
        (Call::Write(value), _) => push_json_bytes(&mut line, value),
        (Call::Cas { expected, new }, _) => {
            line.push('[');
            push_optional(&mut line, expected.as_deref());
            line.push(',');
            push_json_bytes(&mut line, new);
            line.push(']');
        }
    }
    let _ = write!(line, ",\"time\":{time}");
    if row_type == "fail" && op.outcome == Outcome::CasOk(false) {
        let _ = write!(line, ",\"error\":\"{CAS_MISMATCH}\"");
    }
    line.push('}');
    JsonRow { time, line }
}

impl History {
    /// The history's rows in time order (at equal times, completions first, then by
    /// operation): an `invoke` row per operation and a completion row per completed one.
    pub fn jsonl_rows(&self) -> Vec<JsonRow> {
        // (time, 0 = completion / 1 = invocation, operation index, row)
        let mut rows: Vec<(u64, u8, usize, JsonRow)> = Vec::with_capacity(self.len() * 2);
        for (index, op) in self.ops().iter().enumerate() {
            rows.push((op.invoke, 1, index, row(op, "invoke", op.invoke)));
            let row_type = match op.outcome {
                Outcome::Pending => continue,
                Outcome::ReadOk(_) | Outcome::WriteOk | Outcome::CasOk(true) => "ok",
                Outcome::CasOk(false) | Outcome::Fail => "fail",
                Outcome::Info => "info",
            };
            let Some(complete) = op.complete else {
                // An `Info` without a completion time: leave it without a completion row
                // (it then reads back as pending, which means the same).
                continue;
            };
            rows.push((complete, 0, index, row(op, row_type, complete)));
        }
        rows.sort_by_key(|(time, order, index, _)| (*time, *order, *index));
        rows.into_iter().map(|(_, _, _, row)| row).collect()
    }

    /// The history as JSON lines (shape in the [`check`](super) module docs), each line
    /// ending in `\n`.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for row in self.jsonl_rows() {
            out.push_str(&row.line);
            out.push('\n');
        }
        out
    }

    /// Parses JSON lines written by [`History::to_jsonl`] or in the same shape by another
    /// tool. Blank lines are skipped, and so are rows whose `f` is not `read`, `write` or
    /// `cas` (checkouts, say) or whose `process` is not a number (a nemesis). An invocation
    /// left without a completion row is [`Outcome::Pending`].
    ///
    /// Operations are numbered in the order of their invocation rows. Numbers given for
    /// values are read as their decimal text.
    pub fn from_jsonl(text: &str) -> Result<History, ParseError> {
        let mut history = History::new();
        // The operation in flight for each process.
        let mut pending: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let error = |message: String| ParseError {
                line: number,
                message,
            };
            if line.trim().is_empty() {
                continue;
            }
            let fields = match parse_value(line).map_err(&error)? {
                Json::Object(fields) => fields,
                _ => return Err(error("not a JSON object".into())),
            };
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value)
            };
            let Some(Json::Number(process)) = field("process") else {
                continue;
            };
            let Ok(process) = process.parse::<u64>() else {
                continue;
            };
            let f = match field("f") {
                Some(Json::String(f)) if f == "read" || f == "write" || f == "cas" => f.as_str(),
                _ => continue,
            };
            let Some(Json::String(row_type)) = field("type") else {
                return Err(error("missing \"type\"".into()));
            };
            let time = match field("time") {
                Some(Json::Number(time)) => time
                    .parse::<u64>()
                    .map_err(|_| error(format!("bad time {time}")))?,
                _ => return Err(error("missing \"time\"".into())),
            };
            let key = field("key")
                .and_then(|key| key.bytes())
                .ok_or_else(|| error("missing or bad \"key\"".into()))?;
            let value = field("value").unwrap_or(&Json::Null);
            if row_type == "invoke" {
                if let Some(&earlier) = pending.get(&process) {
                    return Err(error(format!(
                        "process {process} invokes while its operation invoked at {} is in flight",
                        history.ops()[earlier].invoke
                    )));
                }
                let call = match f {
                    "read" => Call::Read,
                    "write" => Call::Write(
                        value
                            .bytes()
                            .ok_or_else(|| error("bad write value".into()))?,
                    ),
                    _ => match value {
                        Json::Array(pair) if pair.len() == 2 => Call::Cas {
                            expected: pair[0]
                                .optional_bytes()
                                .ok_or_else(|| error("bad cas expected value".into()))?,
                            new: pair[1]
                                .bytes()
                                .ok_or_else(|| error("bad cas new value".into()))?,
                        },
                        _ => return Err(error("cas value is not a pair".into())),
                    },
                };
                let id = history.invoke(process, key, call, time);
                pending.insert(process, id.0);
                continue;
            }
            let Some(id) = pending.remove(&process) else {
                return Err(error(format!(
                    "process {process} completes an operation it never invoked"
                )));
            };
            let op = &history.ops()[id];
            if op.call.name() != f || op.key != key {
                return Err(error(format!(
                    "process {process} completes a different operation than it invoked"
                )));
            }
            let mismatch = matches!(field("error"), Some(Json::String(e)) if e == CAS_MISMATCH);
            let outcome = match (row_type.as_str(), f) {
                ("ok", "read") => Outcome::ReadOk(
                    value
                        .optional_bytes()
                        .ok_or_else(|| error("bad read value".into()))?,
                ),
                ("ok", "write") => Outcome::WriteOk,
                ("ok", _) => Outcome::CasOk(true),
                ("fail", "cas") if mismatch => Outcome::CasOk(false),
                ("fail", _) => Outcome::Fail,
                ("info", _) => Outcome::Info,
                (other, _) => return Err(error(format!("unknown type {other:?}"))),
            };
            history
                .complete(super::history::OpId(id), outcome, time)
                .map_err(|e| error(e.to_string()))?;
        }
        Ok(history)
    }
}

/// A parsed JSON value; numbers are kept as their text.
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// A key or a value: a string's UTF-8 bytes, an array of byte numbers, or a number's text.
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Json::String(text) | Json::Number(text) => Some(text.clone().into_bytes()),
            Json::Array(items) => items
                .iter()
                .map(|item| match item {
                    Json::Number(n) => n.parse::<u8>().ok(),
                    _ => None,
                })
                .collect(),
            Json::Null | Json::Bool | Json::Object(_) => None,
        }
    }

    /// Like [`Json::bytes`], with `null` for absent.
    fn optional_bytes(&self) -> Option<Option<Vec<u8>>> {
        match self {
            Json::Null => Some(None),
            other => other.bytes().map(Some),
        }
    }
}

/// The deepest nesting the parser accepts (a history row needs 3).
const MAX_DEPTH: usize = 16;

fn parse_value(text: &str) -> Result<Json, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        position: 0,
    };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.position != parser.bytes.len() {
        return Err(format!(
            "trailing characters at column {}",
            parser.position + 1
        ));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.position) {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at column {}", self.position + 1))
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_whitespace();
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            self.fail(&format!("expected '{}'", char::from(byte)))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.position..].starts_with(word.as_bytes()) {
            self.position += word.len();
            Ok(value)
        } else {
            self.fail("unexpected word")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deep");
        }
        self.skip_whitespace();
        match self.peek() {
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool),
            Some(b'f') => self.literal("false", Json::Bool),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.position += 1;
                let mut items = Vec::new();
                self.skip_whitespace();
                if self.peek() == Some(b']') {
                    self.position += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_whitespace();
                    match self.peek() {
                        Some(b',') => self.position += 1,
                        Some(b']') => {
                            self.position += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return self.fail("expected ',' or ']'"),
                    }
                }
            }
            Some(b'{') => {
                self.position += 1;
                let mut fields = Vec::new();
                self.skip_whitespace();
                if self.peek() == Some(b'}') {
                    self.position += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.skip_whitespace();
                    if self.peek() != Some(b'"') {
                        return self.fail("expected a field name");
                    }
                    let name = self.string()?;
                    self.expect(b':')?;
                    fields.push((name, self.value(depth + 1)?));
                    self.skip_whitespace();
                    match self.peek() {
                        Some(b',') => self.position += 1,
                        Some(b'}') => {
                            self.position += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => return self.fail("expected ',' or '}'"),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.position;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
                    self.position += 1;
                }
                let text = String::from_utf8_lossy(&self.bytes[start..self.position]).into_owned();
                Ok(Json::Number(text))
            }
            _ => self.fail("expected a value"),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.position..self.position + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok());
        match digits {
            Some(code) => {
                self.position += 4;
                Ok(code)
            }
            None => self.fail("bad \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        // The opening quote.
        self.position += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return self.fail("unterminated string");
            };
            self.position += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else {
                        return self.fail("unterminated escape");
                    };
                    self.position += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&high) {
                                if !self.bytes[self.position..].starts_with(b"\\u") {
                                    return self.fail("lone surrogate");
                                }
                                self.position += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return self.fail("bad surrogate pair");
                                }
                                0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                            } else {
                                high
                            };
                            match char::from_u32(code) {
                                Some(c) => c,
                                None => return self.fail("bad \\u escape"),
                            }
                        }
                        _ => return self.fail("unknown escape"),
                    };
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                }
                byte => out.push(byte),
            }
        }
        String::from_utf8(out).or_else(|_| self.fail("string is not UTF-8"))
    }
}

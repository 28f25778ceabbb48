//! JSON-lines logs on stderr, as the host reads them (docs/protocol.md §5).
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// A log field value.
#[derive(Clone, Debug)]
pub enum Val {
    S(String),
    U(u64),
    I(i64),
    B(bool),
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::S(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::S(s)
    }
}
impl From<u64> for Val {
    fn from(v: u64) -> Val {
        Val::U(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::B(v)
    }
}

pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes one log line: `{"level":..,"msg":..,"time":<ms>, fields...}`.
pub fn emit(level: &str, msg: &str, fields: &[(&str, Val)]) {
    let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut line = format!("{{\"level\":{},\"msg\":{},\"time\":{}", quote(level), quote(msg), time);
    for (k, v) in fields {
        line.push(',');
        line.push_str(&quote(k));
        line.push(':');
        match v {
            Val::S(s) => line.push_str(&quote(s)),
            Val::U(n) => line.push_str(&n.to_string()),
            Val::I(n) => line.push_str(&n.to_string()),
            Val::B(b) => line.push_str(if *b { "true" } else { "false" }),
        }
    }
    line.push_str("}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn debug(msg: &str, fields: &[(&str, Val)]) {
    emit("debug", msg, fields)
}
pub fn info(msg: &str, fields: &[(&str, Val)]) {
    emit("info", msg, fields)
}
pub fn warn(msg: &str, fields: &[(&str, Val)]) {
    emit("warn", msg, fields)
}
pub fn error(msg: &str, fields: &[(&str, Val)]) {
    emit("error", msg, fields)
}

//! keepalived's conditional configuration and parameters (its lib/parser.c), applied to each
//! line before it is split into words:
//!
//! - `@ID rest` keeps `rest` only when ID is this host's configuration id (keepalived's `-i`,
//!   by default the host name up to its first dot); `@^ID rest` only when it is not. Other
//!   lines of another id are dropped silently, as keepalived drops them.
//! - `$NAME=VALUE` defines a parameter (a value ending in `\` goes on over the next lines, up to
//!   one that does not end in `\` or a blank one); `$NAME` (followed by a space, tab, `,`, `)` or
//!   the line's end) and `${NAME}` are replaced by its value, again until nothing changes; a
//!   multi-line value makes several lines. `${_INSTANCE}` is the configuration id.
//! - `~SEQ(VAR, END)`, `~SEQ(VAR, START, END)`, `~SEQ(VAR, START, STEP, END)` repeat the rest of
//!   the line with `$VAR` set to each value.

use std::collections::HashMap;

/// Lines longer than this after replacement are refused, as keepalived's buffer.
const MAX_LINE: usize = 1024;
/// Values a `~SEQ` may take.
const MAX_SEQ: i64 = 100_000;

/// The parameters and the host's configuration id, through a file and its includes.
#[derive(Clone, Debug, Default)]
pub struct Params {
    config_id: Option<String>,
    defs: HashMap<String, String>,
    /// A multi-line definition being read: its name and value so far.
    open: Option<(String, String)>,
}

impl Params {
    /// Parameters for the host whose configuration id is `config_id`.
    pub fn new(config_id: Option<String>) -> Params {
        let mut p = Params { config_id, ..Params::default() };
        if let Some(id) = &p.config_id {
            p.defs.insert("_INSTANCE".into(), id.clone());
        }
        p
    }

    /// The lines `raw` stands for (none, one, or several).
    pub fn line(&mut self, raw: &str) -> Result<Vec<String>, String> {
        let text = raw.trim_start();
        if let Some((name, mut value)) = self.open.take() {
            let (part, more) = continued(text);
            if !text.is_empty() {
                value.push('\n');
                value.push_str(part);
            }
            if more && !text.is_empty() {
                self.open = Some((name, value));
            } else {
                self.defs.insert(name, value);
            }
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.expand(text, 0, &mut out)?;
        Ok(out)
    }

    fn expand(&mut self, text: &str, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
        if depth > 16 {
            return Err("parameters nest too deep (a definition that uses itself?)".into());
        }
        let Some(text) = self.conditional(text.trim_start()) else { return Ok(()) };
        if let Some(def) = text.strip_prefix('$') {
            if let Some((name, value)) = definition(def) {
                let (value, more) = continued(value.trim_start());
                if more {
                    self.open = Some((name.to_string(), value.to_string()));
                } else {
                    self.defs.insert(name.to_string(), value.to_string());
                }
                return Ok(());
            }
        }
        if let Some(rest) = text.strip_prefix("~SEQ") {
            return self.seq(rest, depth, out);
        }
        if text.starts_with("~LST") {
            return Err("~LST is not supported by xvs (~SEQ is)".into());
        }
        let replaced = self.substitute(text)?;
        if replaced.contains('\n') {
            for l in replaced.lines() {
                self.expand(l, depth + 1, out)?;
            }
        } else if replaced != text {
            // A replacement may have made an `@` line or a definition: read it again.
            self.expand(&replaced, depth + 1, out)?;
        } else {
            out.push(replaced);
        }
        Ok(())
    }

    /// The line without its `@ID`/`@^ID` prefix when it applies here; `None` when it does not.
    fn conditional<'a>(&self, text: &'a str) -> Option<&'a str> {
        let Some(rest) = text.strip_prefix('@') else { return Some(text) };
        let (negate, rest) = match rest.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let (id, line) = (&rest[..end], rest[end..].trim_start());
        if line.is_empty() {
            return None;
        }
        let matches = !id.is_empty() && self.config_id.as_deref() == Some(id);
        (matches != negate).then_some(line)
    }

    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut cur = text.to_string();
        for _ in 0..32 {
            let next = self.substitute_once(&cur);
            if next.len() > MAX_LINE {
                return Err(format!("the line is longer than {MAX_LINE} bytes once its parameters are replaced"));
            }
            if next == cur {
                return Ok(cur);
            }
            cur = next;
        }
        Err("parameters nest too deep (a definition that uses itself?)".into())
    }

    fn substitute_once(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(braced) = after.strip_prefix('{') {
                if let Some(end) = braced.find('}') {
                    if let Some(v) = self.defs.get(&braced[..end]) {
                        out.push_str(v);
                        rest = &braced[end + 1..];
                        continue;
                    }
                }
            } else {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                let name = &after[..end];
                let next = after[end..].chars().next();
                if next.is_none_or(|c| matches!(c, ' ' | '\t' | ',' | ')')) {
                    if let Some(v) = self.defs.get(name) {
                        out.push_str(v);
                        rest = &after[end..];
                        continue;
                    }
                }
            }
            // Not a parameter (or not defined): left as it is.
            out.push('$');
            rest = after;
        }
        out.push_str(rest);
        out
    }

    fn seq(&mut self, rest: &str, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
        let rest = rest.trim_start();
        let close = rest.find(')').filter(|_| rest.starts_with('(')).ok_or("~SEQ needs (VAR, ...)")?;
        let args: Vec<&str> = rest[1..close].split(',').map(str::trim).collect();
        let body = rest[close + 1..].trim_start().to_string();
        let num = |s: &str| -> Result<i64, String> {
            let s = self.substitute(s)?;
            parse_int(&s).ok_or_else(|| format!("~SEQ: '{s}' is not a number"))
        };
        let (var, start, step, end) = match args.as_slice() {
            [v, e] => {
                let e = num(e)?;
                (*v, if e < 0 { -1 } else { 1 }, if e < 1 { -1 } else { 1 }, e)
            }
            [v, s, e] => {
                let (s, e) = (num(s)?, num(e)?);
                (*v, s, if e < s { -1 } else { 1 }, e)
            }
            [v, s, st, e] => (*v, num(s)?, num(st)?, num(e)?),
            _ => return Err("~SEQ takes (VAR, END), (VAR, START, END) or (VAR, START, STEP, END)".into()),
        };
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("~SEQ: '{var}' is not a parameter name"));
        }
        if step == 0 || (step > 0 && end < start) || (step < 0 && end > start) {
            return Err(format!("~SEQ({var}, {start}, {step}, {end}) never reaches its end"));
        }
        if (end - start) / step > MAX_SEQ {
            return Err(format!("~SEQ makes more than {MAX_SEQ} lines"));
        }
        let mut v = start;
        while (step > 0 && v <= end) || (step < 0 && v >= end) {
            self.defs.insert(var.to_string(), v.to_string());
            self.expand(&body, depth + 1, out)?;
            v += step;
        }
        Ok(())
    }
}

/// `NAME=VALUE` (after the `$`): no space before `=`, a name of letters, digits and `_` not
/// starting with a digit.
fn definition(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.split_once('=')?;
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some((name, value))
}

/// The text without a trailing `\`, and whether it had one.
fn continued(s: &str) -> (&str, bool) {
    let t = s.trim_end();
    match t.strip_suffix('\\') {
        Some(p) => (p.trim_end(), true),
        None => (t, false),
    }
}

/// An integer as strtol with base 0 reads it: decimal, `0x` hexadecimal, `0` octal.
fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: Option<&str>, text: &str) -> Vec<String> {
        let mut p = Params::new(id.map(String::from));
        text.lines().flat_map(|l| p.line(l).unwrap()).collect()
    }

    #[test]
    fn conditional_lines() {
        let text = "@lb1 priority 150\n@lb2 priority 100\n@^lb1 state BACKUP\n@lb1\nplain\n  @lb1 indented";
        assert_eq!(run(Some("lb1"), text), ["priority 150", "plain", "indented"]);
        assert_eq!(run(Some("lb2"), text), ["priority 100", "state BACKUP", "plain"]);
        assert_eq!(run(None, text), ["state BACKUP", "plain"]);
    }

    #[test]
    fn definitions_and_replacement() {
        let text = "$VIP=198.18.0.1\n$PORT=80\nvirtual_server $VIP $PORT {\nx ${VIP}:${PORT}/x $VIPX $\n$BAD =1\nname ${_INSTANCE}";
        assert_eq!(
            run(Some("lb1"), text),
            ["virtual_server 198.18.0.1 80 {", "x 198.18.0.1:80/x $VIPX $", "$BAD =1", "name lb1"]
        );
        // A definition may hold an @ line and other parameters, read when used.
        let text = "$ID=lb1\n$P=@${ID} priority 150\n$P\n$A=$B\n$B=2\n$A";
        assert_eq!(run(Some("lb1"), text), ["priority 150", "2"]);
    }

    #[test]
    fn multi_line_definitions_make_lines() {
        let text = "$RS=real_server $IP 80 { \\\n  weight 1 \\\n}\n$IP=198.18.2.2\n$RS\n$IP=198.18.2.3\n$RS";
        assert_eq!(
            run(None, text),
            ["real_server 198.18.2.2 80 {", "weight 1", "}", "real_server 198.18.2.3 80 {", "weight 1", "}"]
        );
    }

    #[test]
    fn seq_repeats_a_line() {
        assert_eq!(
            run(None, "~SEQ(i, 3) real_server 198.18.2.$i 80"),
            ["real_server 198.18.2.1 80", "real_server 198.18.2.2 80", "real_server 198.18.2.3 80"]
        );
        assert_eq!(run(None, "~SEQ(i, 10, 5, 20) p $i"), ["p 10", "p 15", "p 20"]);
        assert_eq!(run(None, "~SEQ(i, 3, 1) p $i"), ["p 3", "p 2", "p 1"]);
        let mut p = Params::new(None);
        assert!(p.line("~SEQ(i, 1, 0, 5) x").unwrap_err().contains("never reaches"));
        assert!(p.line("~LST(i, 1, 2) x").unwrap_err().contains("~LST"));
    }
}

//! keepalived.conf's syntax: words, `{ }` blocks, comments and `include`, each word with the
//! file and line it came from, so every later error can point at it.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::params::Params;

/// Where a word came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The file (as given, or as an include resolved it).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// An error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A statement: its words, and the statements of its block if it opens one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The keyword and its arguments.
    pub words: Vec<String>,
    /// Where the keyword is.
    pub pos: Pos,
    /// The block's statements (`None` without a block).
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The keyword.
    pub fn keyword(&self) -> &str {
        &self.words[0]
    }

    /// The arguments after the keyword.
    pub fn args(&self) -> &[String] {
        &self.words[1..]
    }

    /// An error at this statement.
    pub fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError { pos: self.pos.clone(), message: message.into() }
    }
}

#[derive(Debug)]
enum Tok {
    Word(String),
    Open,
    Close,
}

/// keepalived nests includes at most this deep (it refuses loops the same way).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads `path` and everything it includes into statements, for the host whose configuration
/// id is `config_id` (see [`crate::params`]).
pub fn parse_file(path: &Path, config_id: Option<&str>) -> Result<Vec<Node>, ParseError> {
    let mut toks = Vec::new();
    let mut params = Params::new(config_id.map(String::from));
    lex_file(path, &Pos { file: path.to_path_buf(), line: 0 }, 0, &mut toks, &mut params)?;
    build(&mut toks.into_iter().peekable(), path, None, 0)
}

/// Parses text as if it were the file `name` (includes resolve relative to its directory).
pub fn parse_str(name: &Path, text: &str, config_id: Option<&str>) -> Result<Vec<Node>, ParseError> {
    let mut toks = Vec::new();
    let mut params = Params::new(config_id.map(String::from));
    lex(name, text, 0, &mut toks, &mut params)?;
    build(&mut toks.into_iter().peekable(), name, None, 0)
}

fn lex_file(
    path: &Path,
    from: &Pos,
    depth: usize,
    out: &mut Vec<(Tok, Pos)>,
    params: &mut Params,
) -> Result<(), ParseError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ParseError { pos: from.clone(), message: format!("cannot read {}: {e}", path.display()) })?;
    lex(path, &text, depth, out, params)
}

fn lex(
    file: &Path,
    text: &str,
    depth: usize,
    out: &mut Vec<(Tok, Pos)>,
    params: &mut Params,
) -> Result<(), ParseError> {
    for (i, raw) in text.lines().enumerate() {
        let pos = Pos { file: file.to_path_buf(), line: i + 1 };
        // Comments first (a `#` in a definition is a comment, as keepalived strips them first).
        let uncommented = strip_comment(raw);
        for line in params.line(&uncommented).map_err(|m| ParseError { pos: pos.clone(), message: m })? {
            lex_line(file, &line, &pos, depth, out, params)?;
        }
    }
    Ok(())
}

/// `line` up to a `#` or `!` outside double quotes.
fn strip_comment(line: &str) -> String {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' | '!' if !quoted => return line[..i].to_string(),
            _ => {}
        }
    }
    line.to_string()
}

fn lex_line(
    file: &Path,
    raw: &str,
    pos: &Pos,
    depth: usize,
    out: &mut Vec<(Tok, Pos)>,
    params: &mut Params,
) -> Result<(), ParseError> {
    let pos = pos.clone();
    {
        let words = split_line(raw).map_err(|m| ParseError { pos: pos.clone(), message: m })?;
        if words.first().map(String::as_str) == Some("include") {
            if words.len() != 2 {
                return Err(ParseError { pos, message: "include takes one file name or pattern".into() });
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(ParseError { pos, message: "includes nest too deep (a loop?)".into() });
            }
            for f in expand_include(file, &words[1], &pos)? {
                lex_file(&f, &pos, depth + 1, out, params)?;
            }
            return Ok(());
        }
        for w in words {
            let t = match w.as_str() {
                "{" => Tok::Open,
                "}" => Tok::Close,
                _ => Tok::Word(w),
            };
            out.push((t, pos.clone()));
        }
        // A line ends a statement: mark it with an empty word run boundary.
        out.push((Tok::Word(String::new()), pos));
    }
    Ok(())
}

/// Splits a line into words: `#` and `!` start comments, `{` and `}` are words of their own,
/// double quotes group a word with spaces.
fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    let flush = |cur: &mut String, words: &mut Vec<String>| {
        if !cur.is_empty() {
            words.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '"' => {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    cur.push(q);
                }
                if !closed {
                    return Err("unterminated quoted string".into());
                }
                words.push(std::mem::take(&mut cur));
            }
            '{' | '}' => {
                flush(&mut cur, &mut words);
                words.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut cur, &mut words),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut words);
    Ok(words)
}

/// An include pattern, relative to the including file's directory unless absolute; sorted, and
/// a pattern that matches nothing is an error (a missing file would silently drop services).
fn expand_include(from: &Path, pattern: &str, pos: &Pos) -> Result<Vec<PathBuf>, ParseError> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        from.parent().unwrap_or(Path::new(".")).join(pattern)
    };
    let err = |m: String| ParseError { pos: pos.clone(), message: m };
    let paths = glob::glob(&full.to_string_lossy()).map_err(|e| err(format!("bad include pattern {pattern}: {e}")))?;
    let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(err(format!("include {pattern}: no such file ({})", full.display())));
    }
    Ok(files)
}

/// Blocks nest at most this deep (keepalived's own files nest four deep).
const MAX_DEPTH: usize = 32;

fn build(
    toks: &mut std::iter::Peekable<std::vec::IntoIter<(Tok, Pos)>>,
    file: &Path,
    open: Option<&Pos>,
    depth: usize,
) -> Result<Vec<Node>, ParseError> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut start: Option<Pos> = None;
    while let Some((t, pos)) = toks.next() {
        match t {
            Tok::Word(w) if w.is_empty() => {
                if !words.is_empty() {
                    // keepalived allows the block's brace on the next line.
                    if matches!(toks.peek(), Some((Tok::Open, _))) {
                        continue;
                    }
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        pos: start.take().expect("set"),
                        block: None,
                    });
                }
            }
            Tok::Word(w) => {
                if words.is_empty() {
                    start = Some(pos);
                }
                words.push(w);
            }
            Tok::Open => {
                if depth >= MAX_DEPTH {
                    return Err(ParseError { pos, message: format!("blocks nest more than {MAX_DEPTH} deep") });
                }
                let block = build(toks, file, Some(&pos), depth + 1)?;
                if words.is_empty() {
                    return Err(ParseError { pos, message: "a block must follow a keyword".into() });
                }
                nodes.push(Node {
                    words: std::mem::take(&mut words),
                    pos: start.take().expect("set"),
                    block: Some(block),
                });
            }
            Tok::Close => {
                if open.is_none() {
                    return Err(ParseError { pos, message: "unmatched '}'".into() });
                }
                if !words.is_empty() {
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        pos: start.take().expect("set"),
                        block: None,
                    });
                }
                return Ok(nodes);
            }
        }
    }
    if let Some(p) = open {
        return Err(ParseError { pos: p.clone(), message: "this '{' is never closed".into() });
    }
    if !words.is_empty() {
        nodes.push(Node { words, pos: start.expect("set"), block: None });
    }
    let _ = file;
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Vec<Node> {
        parse_str(Path::new("/etc/keepalived/keepalived.conf"), t, None).unwrap()
    }

    #[test]
    fn blocks_comments_and_quotes() {
        let n = parse(
            "! Configuration File\nvirtual_server 198.18.0.1 80 {   # the web\n  delay_loop 6\n  real_server 198.18.2.2 80\n  {\n    notify_up \"/bin/echo up now\"\n  }\n}\n",
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].words, ["virtual_server", "198.18.0.1", "80"]);
        let b = n[0].block.as_ref().unwrap();
        assert_eq!(b[0].words, ["delay_loop", "6"]);
        assert_eq!(b[0].pos.line, 3);
        assert_eq!(b[1].keyword(), "real_server");
        assert_eq!(b[1].block.as_ref().unwrap()[0].words, ["notify_up", "/bin/echo up now"]);
        // Braces on one line.
        let n = parse("a { b 1 } c 2\n");
        assert_eq!(n[0].block.as_ref().unwrap()[0].words, ["b", "1"]);
        assert_eq!(n[1].words, ["c", "2"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_str(Path::new("k.conf"), "a {\n b 1\n", None).unwrap_err();
        assert_eq!(e.to_string(), "k.conf:1: this '{' is never closed");
        let e = parse_str(Path::new("k.conf"), "a 1\n}\n", None).unwrap_err();
        assert_eq!(e.to_string(), "k.conf:2: unmatched '}'");
        let deep = "a {\n".repeat(100);
        let e = parse_str(Path::new("k.conf"), &deep, None).unwrap_err();
        assert!(e.to_string().contains("nest more than"), "{e}");
        let e = parse_str(Path::new("/nonexistent/k.conf"), "include other/*.conf\n", None).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/k.conf:1: include other/*.conf: no such file"), "{e}");
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("xvs-ka-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("keepalived.conf"), "include conf.d/*.conf\nlast 1\n").unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "second 2\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "first 1 {\n inner 1\n}\n").unwrap();
        let n = parse_file(&dir.join("keepalived.conf"), None).unwrap();
        let kws: Vec<&str> = n.iter().map(Node::keyword).collect();
        assert_eq!(kws, ["first", "second", "last"]);
        assert!(n[1].pos.file.ends_with("conf.d/b.conf"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

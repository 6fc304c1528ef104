//! A TOML configuration file cut into its services, so that an `apply` of a file that differs
//! from the last applied one in a few services reads only those (`xvsadm apply` at 100k
//! services: parsing the whole 20 MB file took most of two seconds).
//!
//! A file is a head (everything before the first `[[service]]` line: timeouts, settings) and
//! one part per `[[service]]` line, up to the next. Each part is a TOML document by itself: a
//! `[[service]]` header, its keys, its `[[service.real_server]]` tables. Cutting at the lines
//! is exact only when no multi-line string could hold such a line, so a file with one (`"""`
//! or `'''`) is not cut, and a part must parse alone into one service and nothing else
//! ([`service_of`]); any doubt sends the caller back to parsing the whole file.

use super::{Config, ServiceEntry};

/// A file cut at its `[[service]]` lines.
#[derive(Debug, PartialEq)]
pub struct Parts<'a> {
    /// Everything before the first service.
    pub head: &'a str,
    /// Each service's text, from its `[[service]]` line to the next (or the end).
    pub services: Vec<&'a str>,
}

const HEADER: &str = "[[service]]";

/// Cuts `text` at its `[[service]]` lines; `None` when it holds a multi-line string.
pub fn split(text: &str) -> Option<Parts<'_>> {
    // memchr's searches: std's took most of an apply's time on a 20 MB file.
    let has = |needle: &str| memchr::memmem::find(text.as_bytes(), needle.as_bytes()).is_some();
    if has("\"\"\"") || has("'''") {
        return None;
    }
    let mut starts = Vec::new();
    for at in memchr::memmem::find_iter(text.as_bytes(), HEADER) {
        let line_start = memchr::memrchr(b'\n', &text.as_bytes()[..at]).map_or(0, |n| n + 1);
        let line_end = memchr::memchr(b'\n', &text.as_bytes()[at..]).map_or(text.len(), |n| at + n);
        let before = &text[line_start..at];
        let after = text[at + HEADER.len()..line_end].trim_start();
        // Only a header line: `[[service]]` alone, perhaps indented, perhaps commented.
        if before.trim().is_empty() && (after.is_empty() || after.starts_with('#')) {
            starts.push(line_start);
        }
    }
    let head_end = starts.first().copied().unwrap_or(text.len());
    let mut services = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        services.push(&text[s..end]);
    }
    Some(Parts { head: &text[..head_end], services })
}

/// A large file read on several threads: its head, then a run of its parts on each thread, each
/// run a TOML document of services only. `None` when the file is small, cannot be cut, or a
/// run holds anything but services (the whole file is then read in one go, and names the line
/// of any error). 100k services: 0.8 s on one thread.
pub fn parse_parallel(text: &str) -> Option<Config> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let p = split(text)?;
    if threads < 2 || p.services.len() < 2048 {
        return None;
    }
    // `service = []` in the head parses as no services, but no `[[service]]` may follow it.
    if toml::from_str::<toml::Table>(p.head).ok()?.contains_key("service") {
        return None;
    }
    let mut config = Config::parse_whole(p.head).ok()?;
    // Parts are consecutive slices of `text`: a run is the text from its first part's start to
    // its last part's end.
    let offset = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
    let runs: Vec<&str> = p
        .services
        .chunks(p.services.len().div_ceil(threads))
        .map(|c| {
            let last = c[c.len() - 1];
            &text[offset(c[0])..offset(last) + last.len()]
        })
        .collect();
    let parsed: Vec<Option<Vec<ServiceEntry>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs.iter().map(|run| scope.spawn(move || services_of(run))).collect();
        handles.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    for run in parsed {
        config.services.extend(run?);
    }
    Some(config)
}

/// The services of a run of parts, if it holds nothing else.
fn services_of(run: &str) -> Option<Vec<ServiceEntry>> {
    if has_foreign_table(run) {
        return None;
    }
    let mut c = Config::parse_whole(run).ok()?;
    let services = std::mem::take(&mut c.services);
    (c == Config::default()).then_some(services)
}

/// Whether a run of parts names a table other than its services' own (`[sysctl]`, even empty,
/// is an error in a file whose head has one).
fn has_foreign_table(run: &str) -> bool {
    run.lines().map(str::trim_start).any(|l| {
        l.starts_with('[')
            && !l.starts_with("[[service]]")
            && !l.starts_with("[[service.")
            && !l.starts_with("[service.")
    })
}

/// The one service a part describes, or `None` when it does not parse alone into exactly one
/// service and nothing else (the whole file then says what is wrong, with its line). A part
/// with a table other than the service's own is not read alone even when it parses: an empty
/// `[sysctl]` means nothing here but is an error in a file whose head has one.
pub fn service_of(part: &str) -> Option<ServiceEntry> {
    if has_foreign_table(part) {
        return None;
    }
    let mut c = Config::parse_whole(part).ok()?;
    if c.services.len() != 1 {
        return None;
    }
    let s = c.services.pop()?;
    (c == Config::default()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[timeouts]\ntcp = 900\n\n[[service]]\naddress = \"198.18.0.1:80\"\n  [[service.real_server]]\n  address = \"198.18.2.2\"\n\n  [[service]]  # the second\naddress = \"198.18.0.2:80\"\n";

    #[test]
    fn a_file_is_cut_at_its_service_lines() {
        let p = split(FILE).unwrap();
        assert_eq!(p.head, "[timeouts]\ntcp = 900\n\n");
        assert_eq!(p.services.len(), 2);
        assert!(p.services[0].starts_with("[[service]]\n") && p.services[0].ends_with("198.18.2.2\"\n\n"));
        assert_eq!(p.services[1], "  [[service]]  # the second\naddress = \"198.18.0.2:80\"\n");
        assert_eq!(p.head.to_string() + &p.services.concat(), FILE);
        // Each part alone is its service, as the whole file has it.
        let whole = Config::parse(FILE).unwrap();
        let alone: Vec<ServiceEntry> = p.services.iter().map(|s| service_of(s).unwrap()).collect();
        assert_eq!(alone, whole.services);
        // Not headers: a comment, a value, a sub-table.
        let p = split("# [[service]]\nx = \"[[service]]\"\n[[service.real_server]]\n").unwrap();
        assert!(p.services.is_empty());
        assert!(split("[[service]]\nquorum_up = \"\"\"\n[[service]]\n\"\"\"\n").is_none());
        assert!(split("[[service]]\nquorum_up = '''x'''\n").is_none());
        assert_eq!(split("").unwrap(), Parts { head: "", services: vec![] });
    }

    #[test]
    fn a_part_is_one_service_or_nothing() {
        assert!(service_of("[[service]]\naddress = \"198.18.0.1:80\"\n").is_some());
        assert!(service_of("[[service]]\naddress = \"198.18.0.1:80\"\n[timeouts]\ntcp = 1\n").is_none());
        assert!(service_of("[[service]]\naddress = \"198.18.0.1:80\"\n[sysctl]\n").is_none());
        assert!(service_of("[[service]]\naddress = \"198.18.0.1:80\"\n[[ service ]]\n").is_none());
        assert!(service_of("[[service]]\naddress = 5\n").is_none());
        assert!(service_of("[[service]]\nadress = \"198.18.0.1:80\"\n").is_none());
    }

    #[test]
    fn a_large_file_reads_the_same_on_several_threads() {
        let mut text = String::from("keep_unlisted = false\n[timeouts]\ntcp = 900\n[sysctl]\nsloppy_tcp = 1\n\n");
        for i in 0..5000u32 {
            text += &format!(
                "[[service]]\naddress = \"198.18.{}.{}:{}\"\nscheduler = \"wrr\"\nflags = [\n  \"flag-1\",\n]\n  [[service.real_server]]\n  address = \"198.18.2.2:{}\"\n  weight = {}\n  [[service.real_server.check]]\n  type = \"tcp\"\n",
                i / 250,
                i % 250 + 1,
                80 + i % 7,
                1000 + i,
                i % 5
            );
        }
        let one = toml::from_str::<Config>(&text).unwrap();
        assert_eq!(parse_parallel(&text), Some(one.clone()));
        assert_eq!(Config::parse(&text).unwrap(), one);
        // Anything but services in a run: read in one go, which names the line.
        let bad = text.clone() + "[sysctl]\n";
        assert_eq!(parse_parallel(&bad), None);
        assert!(Config::parse(&bad).unwrap_err().starts_with("line "), "{:?}", Config::parse(&bad));
        let typo = text.replace("weight = 3\n", "wieght = 3\n");
        assert_eq!(parse_parallel(&typo), None);
        let early = format!("service = []\n{text}");
        assert_eq!(parse_parallel(&early), None);
        assert!(Config::parse(&early).is_err());
        assert!(Config::parse(&typo).unwrap_err().contains("wieght"));
        // Small files: in one go.
        assert_eq!(parse_parallel("[[service]]\naddress = \"198.18.0.1:80\"\n"), None);
    }
}

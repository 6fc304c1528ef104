//! `xvsadm trace`: follows the packets of a client or a service through the dataplane and
//! prints, for each, what the director did and why (xvsd's `trace`, one line per packet).

use std::io::Write;
use std::net::IpAddr;

use xvs_api::trace::TraceFilter;
use xvs_api::{KeySpec, ProtoName, Request, Response};

use crate::args::parse_host_port;
use crate::client::Transport;
use crate::run::Outcome;

const USAGE: &str = "\
usage: xvsadm trace [CLIENT[:PORT]] [--client ADDRESS[:PORT]] [-t|-u|--sctp-service VIP:PORT]
                    [--count N] [--seconds N] [--json]
  Prints each decision the dataplane takes for the packets of a client (both ways) or to a
  service, one line per packet, until N packets, N seconds, or Ctrl-C.
";

/// What `xvsadm trace` was asked.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Which packets.
    pub filter: TraceFilter,
    /// Stop after this many.
    pub count: Option<u64>,
    /// Stop after this long.
    pub seconds: Option<u64>,
    /// JSON lines instead of text.
    pub json: bool,
}

fn client(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, None));
    }
    match parse_host_port(s, ProtoName::Tcp) {
        Some((a, 0)) => Ok((a, None)),
        Some((a, p)) => Ok((a, Some(p))),
        None => Err(format!("xvsadm trace: '{s}' is not a client address[:port]\n")),
    }
}

/// Parses `xvsadm trace`'s arguments.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options { filter: TraceFilter::default(), count: None, seconds: None, json: false };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("xvsadm trace: {name} needs a value\n{USAGE}"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("xvsadm trace: {name} {v}: give a positive number\n"))
        };
        match a.as_str() {
            "--client" => {
                let (addr, port) = client(&value("--client")?)?;
                o.filter.client = Some(addr);
                o.filter.client_port = port;
            }
            "-t" | "--tcp-service" | "-u" | "--udp-service" | "--sctp-service" => {
                let proto = match a.as_str() {
                    "-t" | "--tcp-service" => ProtoName::Tcp,
                    "-u" | "--udp-service" => ProtoName::Udp,
                    _ => ProtoName::Sctp,
                };
                let v = value(a)?;
                let (addr, port) =
                    parse_host_port(&v, proto).ok_or(format!("xvsadm trace: '{v}' is not a service address\n"))?;
                o.filter.service = Some(KeySpec::Addr { proto, addr, port });
            }
            "--count" | "-c" => o.count = Some(number("--count", value("--count")?)?),
            "--seconds" => o.seconds = Some(number("--seconds", value("--seconds")?)?),
            "--json" => o.json = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            s if !s.starts_with('-') && o.filter.client.is_none() => {
                let (addr, port) = client(s)?;
                o.filter.client = Some(addr);
                o.filter.client_port = port;
            }
            other => return Err(format!("xvsadm trace: unexpected argument {other}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// The time of day (UTC) of a record, to the microsecond.
fn time_of_day(unix_ns: u64) -> String {
    let s = unix_ns / 1_000_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}.{:06}", s / 3600, s / 60 % 60, s % 60, unix_ns / 1000 % 1_000_000)
}

/// Runs a trace, printing each packet as it comes (so the output is not in the outcome).
pub fn run(args: &[String], t: &mut dyn Transport) -> Outcome {
    let o = match parse(args) {
        Ok(o) => o,
        Err(usage) if usage == USAGE => return Outcome { stdout: usage, ..Default::default() },
        Err(e) => return Outcome::fail(e, 2),
    };
    let mut first = t.call_streaming(&Request::Trace { filter: o.filter.clone(), count: o.count, seconds: o.seconds });
    let mut stdout = std::io::stdout().lock();
    loop {
        match first {
            Ok(Response::Trace(ev)) => {
                let line = if o.json {
                    serde_json::to_string(&ev).expect("trace events serialise")
                } else {
                    format!("{} {}", time_of_day(ev.unix_ns), ev.describe())
                };
                // A closed stdout (`xvsadm trace | head`) ends the trace.
                if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
                    return Outcome::default();
                }
            }
            Ok(Response::TraceEnd { traced, lost }) => {
                let mut msg = format!("{traced} packets traced");
                if lost > 0 {
                    msg += &format!(", {lost} more not shown (the trace buffer was full: narrow the filter)");
                }
                return Outcome { stderr: msg + "\n", ..Default::default() };
            }
            Ok(Response::Error(e)) => return Outcome::fail(format!("xvsadm trace: {}\n", e.message), 1),
            Ok(other) => return Outcome::fail(format!("xvsadm trace: unexpected answer from xvsd: {other:?}\n"), 1),
            Err(e) => return Outcome::fail(format!("xvsadm trace: {e}\n"), 2),
        }
        first = t.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn filters_from_the_command_line() {
        let o = parse(&args("198.18.1.100:40000 -t 198.18.0.100:80 --count 5 --json")).unwrap();
        assert_eq!(o.filter.client, Some("198.18.1.100".parse().unwrap()));
        assert_eq!(o.filter.client_port, Some(40000));
        assert_eq!(
            o.filter.service,
            Some(KeySpec::Addr { proto: ProtoName::Tcp, addr: "198.18.0.100".parse().unwrap(), port: 80 })
        );
        assert_eq!((o.count, o.seconds, o.json), (Some(5), None, true));
        let o = parse(&args("--client 2001:2:0:1::100 --seconds 3")).unwrap();
        assert_eq!((o.filter.client_port, o.seconds), (None, Some(3)));
        let o = parse(&args("--client [2001:2:0:1::100]:5000")).unwrap();
        assert_eq!(o.filter.client_port, Some(5000));
        assert!(parse(&args("--count 0")).unwrap_err().contains("positive number"));
        assert!(parse(&args("-t 12")).unwrap_err().contains("not a service address"));
        assert!(parse(&args("--bogus")).unwrap_err().contains("unexpected argument --bogus"));
        assert_eq!(time_of_day(3_723_000_004_000), "01:02:03.000004");
    }
}

//! `xvsadm top`: a live full-screen view of services and real servers — rates, connections,
//! weights, health, drops by reason, VRRP — refreshed from xvsd's snapshot (the one `-Ln
//! --json` prints) every second, sorted and filtered from the keyboard. Fits 80×24.

pub mod view;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::client::Transport;
use crate::run::Outcome;
use view::{KeyPress, SortKey, Top};

const USAGE: &str = "usage: xvsadm top [--interval SECONDS] [--sort name|conns|packets|bytes|active] [--filter TEXT]\n";

/// The options of `xvsadm top`.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Between two snapshots.
    pub interval: Duration,
    /// The initial sort column.
    pub sort: SortKey,
    /// The initial filter.
    pub filter: String,
}

/// Parses `xvsadm top`'s arguments.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options { interval: Duration::from_secs(1), sort: SortKey::Name, filter: String::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("xvsadm top: {name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--interval" | "-i" => {
                let v = value("--interval")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s| (0.2..=60.0).contains(s))
                    .ok_or(format!("xvsadm top: --interval {v}: give seconds between 0.2 and 60\n"))?;
                o.interval = Duration::from_secs_f64(secs);
            }
            "--sort" | "-s" => {
                let v = value("--sort")?;
                o.sort = SortKey::parse(&v).ok_or(format!("xvsadm top: --sort {v}: not a column\n{USAGE}"))?;
            }
            "--filter" | "-f" => o.filter = value("--filter")?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("xvsadm top: unexpected argument {other}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Runs the view until `q`; what to print once the screen is given back.
pub fn run(args: &[String], t: &mut dyn Transport) -> Outcome {
    let o = match parse(args) {
        Ok(o) => o,
        Err(usage) if usage == USAGE => return Outcome { stdout: usage, ..Default::default() },
        Err(e) => return Outcome::fail(e, 2),
    };
    if !std::io::stdout().is_terminal() {
        return Outcome::fail("xvsadm top: needs a terminal (for a listing: xvsadm -Ln --rate)\n".into(), 2);
    }
    // Before the screen is taken: an absent daemon is an ordinary error message.
    let mut snap = match crate::run::snapshot(t, false) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mut top = Top::new(o.sort, o.filter);
    top.observe(&snap, o.interval);
    // A kill (SIGTERM, SIGHUP, SIGINT from outside the terminal) ends the view as `q` does, so
    // that the terminal is given back rather than left in raw mode on the alternate screen.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            return Outcome::fail(format!("xvsadm top: signal handler: {e}\n"), 1);
        }
    }
    // Raw mode and the alternate screen, given back on return and on a panic.
    let mut terminal = ratatui::init();
    let result = (|| -> std::io::Result<()> {
        let mut last = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            terminal.draw(|f| top.draw(f, &snap, &clock()))?;
            // Waits in short steps, to see a signal soon.
            let wait = (last + o.interval).saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            if event::poll(wait)? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        if let Some(k) = keypress(k.code, k.modifiers) {
                            if !top.key(k) {
                                return Ok(());
                            }
                        }
                    }
                    _ => {} // a resize is drawn by the next pass
                }
                continue;
            }
            if last.elapsed() < o.interval {
                continue;
            }
            match crate::run::snapshot(t, false) {
                Ok(s) => {
                    top.observe(&s, last.elapsed());
                    snap = s;
                }
                // Kept on screen with the last figures; the next refresh tries again.
                Err(e) => top.error = Some(e.stderr.trim().to_string()),
            }
            last = Instant::now();
        }
    })();
    ratatui::restore();
    match result {
        Ok(()) => Outcome::default(),
        Err(e) => Outcome::fail(format!("xvsadm top: terminal: {e}\n"), 1),
    }
}

fn keypress(code: KeyCode, mods: KeyModifiers) -> Option<KeyPress> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => KeyPress::CtrlC,
        // Other control chords mean nothing here (not their letter).
        KeyCode::Char(_) if mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => return None,
        KeyCode::Char(c) => KeyPress::Char(c),
        KeyCode::Enter => KeyPress::Enter,
        KeyCode::Esc => KeyPress::Esc,
        KeyCode::Backspace => KeyPress::Backspace,
        KeyCode::Up => KeyPress::Up,
        KeyCode::Down => KeyPress::Down,
        KeyCode::PageUp => KeyPress::PageUp,
        KeyCode::PageDown => KeyPress::PageDown,
        _ => return None,
    })
}

/// The time of day in UTC (`HH:MM:SS UTC`): enough to see the view is live.
fn clock() -> String {
    let s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

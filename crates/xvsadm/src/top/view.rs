//! What `xvsadm top` shows, computed from snapshots without a terminal: the rows (services with
//! their real servers, sorted and filtered), the drop rates between two snapshots, and the
//! screen drawn into any ratatui backend (the tests use ratatui's in-memory one).

use std::collections::BTreeMap;
use std::time::Duration;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;
use xvs_api::{Rates, Snapshot};

use crate::format::{endpoint, service_name};

/// The column rows are sorted by (services among services, servers within their service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// ipvsadm's listing order.
    Name,
    /// Connections per second, highest first.
    Conns,
    /// Packets per second (in + out), highest first.
    Packets,
    /// Bytes per second (in + out), highest first.
    Bytes,
    /// Active connections, most first.
    Active,
}

impl SortKey {
    /// The key a keystroke selects.
    pub fn from_key(c: char) -> Option<SortKey> {
        Some(match c {
            'n' => SortKey::Name,
            'c' => SortKey::Conns,
            'p' => SortKey::Packets,
            'b' => SortKey::Bytes,
            'a' => SortKey::Active,
            _ => return None,
        })
    }

    /// As given to `--sort`.
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "name" => SortKey::Name,
            "conns" => SortKey::Conns,
            "packets" => SortKey::Packets,
            "bytes" => SortKey::Bytes,
            "active" => SortKey::Active,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Conns => "conn/s",
            SortKey::Packets => "pkt/s",
            SortKey::Bytes => "byte/s",
            SortKey::Active => "active",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopRow {
    /// A service (false: one of its real servers, shown indented below it).
    pub service: bool,
    /// `TCP  198.18.0.100:80`, or `198.18.2.2:80` for a server.
    pub name: String,
    /// The scheduler for a service, the forwarding method for a server.
    pub mode: String,
    /// The server's weight (services: the sum).
    pub weight: i64,
    /// ActiveConn (services: the sum).
    pub active: u64,
    /// InActConn (services: the sum).
    pub inactive: u64,
    /// The estimator's rates.
    pub rates: Rates,
    /// `up`/`DOWN` for a checked server, `ok`/`LOST` for a checked service's quorum, `-`.
    pub health: String,
}

impl TopRow {
    fn sort_value(&self, key: SortKey) -> u64 {
        match key {
            SortKey::Name => 0,
            SortKey::Conns => self.rates.cps,
            SortKey::Packets => self.rates.inpps + self.rates.outpps,
            SortKey::Bytes => self.rates.inbps + self.rates.outbps,
            SortKey::Active => self.active,
        }
    }
}

/// The viewer's state: what it is asked to show, and the previous snapshot's drop counters.
#[derive(Clone, Debug)]
pub struct Top {
    /// The sort column.
    pub sort: SortKey,
    /// Only services or servers whose name contains this, in any case (empty: all).
    pub filter: String,
    /// The filter being typed after `/` (None: not typing).
    pub editing: Option<String>,
    /// First table row shown.
    pub scroll: usize,
    /// Drops per second by reason, from the last two snapshots.
    pub drop_rates: BTreeMap<String, u64>,
    prev_drops: Option<BTreeMap<String, u64>>,
    /// The last error talking to xvsd (the last snapshot stays on screen).
    pub error: Option<String>,
}

impl Top {
    /// A viewer sorted by `sort` and filtered by `filter`.
    pub fn new(sort: SortKey, filter: String) -> Top {
        Top { sort, filter, editing: None, scroll: 0, drop_rates: BTreeMap::new(), prev_drops: None, error: None }
    }

    /// Takes a new snapshot's drop counters, `elapsed` after the previous one.
    pub fn observe(&mut self, snap: &Snapshot, elapsed: Duration) {
        if let Some(prev) = &self.prev_drops {
            let secs = elapsed.as_secs_f64().max(0.001);
            self.drop_rates = snap
                .drops
                .iter()
                .map(|(k, v)| (k.clone(), (v.saturating_sub(*prev.get(k).unwrap_or(&0)) as f64 / secs).round() as u64))
                .collect();
        }
        self.prev_drops = Some(snap.drops.clone());
        self.error = None;
    }

    /// Applies a keystroke; false when it asks to quit.
    pub fn key(&mut self, c: KeyPress) -> bool {
        if c == KeyPress::CtrlC {
            return false;
        }
        if let Some(text) = &mut self.editing {
            match c {
                KeyPress::Char(ch) => text.push(ch),
                KeyPress::Backspace => {
                    text.pop();
                }
                KeyPress::Enter => {
                    self.filter = self.editing.take().unwrap_or_default();
                    self.scroll = 0;
                }
                KeyPress::Esc => self.editing = None,
                _ => {}
            }
            return true;
        }
        match c {
            KeyPress::Char('q') => return false,
            KeyPress::Char('/') => self.editing = Some(String::new()),
            KeyPress::Esc => {
                self.filter.clear();
                self.scroll = 0;
            }
            KeyPress::Char(ch) => {
                if let Some(k) = SortKey::from_key(ch) {
                    self.sort = k;
                }
            }
            KeyPress::Down => self.scroll += 1,
            KeyPress::Up => self.scroll = self.scroll.saturating_sub(1),
            KeyPress::PageDown => self.scroll += 10,
            KeyPress::PageUp => self.scroll = self.scroll.saturating_sub(10),
            _ => {}
        }
        true
    }

    /// The table's rows for `snap`: services in sort order, each followed by its servers in
    /// sort order; with a filter, a service whose name matches keeps all its servers, and
    /// otherwise only its matching servers are shown (under it).
    pub fn rows(&self, snap: &Snapshot) -> Vec<TopRow> {
        let no_names = |_: u16, _: &str| None;
        let mut groups: Vec<(TopRow, Vec<TopRow>)> = Vec::new();
        for s in crate::format::ordered(snap, false) {
            let health = snap.health.iter().find(|h| h.service == s.spec.key);
            let mut servers: Vec<TopRow> = s
                .dests
                .iter()
                .map(|d| {
                    let name = endpoint(&d.spec.addr, &d.spec.port.to_string());
                    let checked = health.and_then(|h| h.servers.iter().find(|r| r.server.to_string() == name));
                    TopRow {
                        service: false,
                        mode: if d.overloaded { format!("{}!", d.spec.method) } else { d.spec.method.clone() },
                        weight: i64::from(d.spec.weight),
                        active: u64::from(d.active),
                        inactive: u64::from(d.inactive),
                        rates: d.rates,
                        health: checked.map_or("-".into(), |r| if r.alive { "up".into() } else { "DOWN".into() }),
                        name,
                    }
                })
                .collect();
            let name = service_name(&s.spec.key, true, &no_names);
            let service = TopRow {
                service: true,
                mode: s.spec.scheduler.clone(),
                weight: servers.iter().map(|r| r.weight).sum(),
                active: servers.iter().map(|r| r.active).sum(),
                inactive: servers.iter().map(|r| r.inactive).sum(),
                rates: s.rates,
                health: health.map_or("-".into(), |h| if h.quorum_up { "ok".into() } else { "LOST".into() }),
                name,
            };
            let filter = self.filter.to_lowercase();
            let matches = |name: &str| name.to_lowercase().contains(&filter);
            if !filter.is_empty() && !matches(&service.name) {
                servers.retain(|r| matches(&r.name));
                if servers.is_empty() {
                    continue;
                }
            }
            if self.sort != SortKey::Name {
                servers.sort_by_key(|r| std::cmp::Reverse(r.sort_value(self.sort)));
            }
            groups.push((service, servers));
        }
        if self.sort != SortKey::Name {
            groups.sort_by_key(|(s, _)| std::cmp::Reverse(s.sort_value(self.sort)));
        }
        groups.into_iter().flat_map(|(s, servers)| std::iter::once(s).chain(servers)).collect()
    }

    /// Draws the screen: a title line, the table, drops by reason, VRRP, and the key help.
    pub fn draw(&mut self, f: &mut Frame, snap: &Snapshot, clock: &str) {
        let rows = self.rows(snap);
        let drops: Vec<(&String, &u64)> = self.drop_rates.iter().filter(|(_, v)| **v > 0).collect();
        let drop_lines = if drops.is_empty() { 0 } else { 1 };
        let vrrp_lines = u16::from(!snap.vrrp.is_empty());
        let [title, table, bottom, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(drop_lines + vrrp_lines),
            Constraint::Length(1),
        ])
        .areas(f.area());

        let servers: usize = snap.services.iter().map(|s| s.dests.len()).sum();
        let mut t = vec![Span::styled("xvs top", Style::new().add_modifier(Modifier::BOLD))];
        t.push(Span::raw(format!(
            "  {} svc {} rs  sort:{}{}  {clock}",
            snap.services.len(),
            servers,
            self.sort.label(),
            if self.filter.is_empty() { String::new() } else { format!("  filter:{}", self.filter) }
        )));
        if let Some(e) = &self.error {
            t.push(Span::styled(format!("  {e}"), Style::new().add_modifier(Modifier::REVERSED)));
        }
        f.render_widget(Paragraph::new(Line::from(t)), title);

        // Room for the header line; the scroll never leaves the table empty.
        let visible = usize::from(table.height.saturating_sub(1));
        self.scroll = self.scroll.min(rows.len().saturating_sub(visible.max(1)));
        let header = Row::new(
            ["SERVICE / SERVER", "MODE", "W", "ACT", "INACT", "CONN/S", "PKT/S", "BYTE/S", "HEALTH"]
                .into_iter()
                .enumerate()
                .map(
                    |(i, h)| {
                        if (2..8).contains(&i) {
                            Cell::from(Line::from(h).right_aligned())
                        } else {
                            Cell::from(h)
                        }
                    },
                ),
        )
        .style(Style::new().add_modifier(Modifier::REVERSED));
        let body = rows.iter().skip(self.scroll).map(|r| {
            let name = if r.service { r.name.clone() } else { format!("  {}", r.name) };
            let style = if r.service { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
            Row::new(vec![
                Cell::from(name),
                Cell::from(r.mode.clone()),
                Cell::from(Line::from(r.weight.to_string()).right_aligned()),
                Cell::from(Line::from(human(r.active)).right_aligned()),
                Cell::from(Line::from(human(r.inactive)).right_aligned()),
                Cell::from(Line::from(human(r.rates.cps)).right_aligned()),
                Cell::from(Line::from(human(r.rates.inpps + r.rates.outpps)).right_aligned()),
                Cell::from(Line::from(human(r.rates.inbps + r.rates.outbps)).right_aligned()),
                Cell::from(r.health.clone()),
            ])
            .style(style)
        });
        let widths = [
            Constraint::Min(22),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
        ];
        f.render_widget(Table::new(body, widths).header(header).column_spacing(1), table);

        let mut lines = Vec::new();
        if !drops.is_empty() {
            let text: Vec<String> = drops.iter().map(|(k, v)| format!("{k} {}/s", human(**v))).collect();
            lines.push(Line::from(format!("drops: {}", text.join("  "))));
        }
        if !snap.vrrp.is_empty() {
            let text: Vec<String> = snap.vrrp.iter().map(|v| format!("{} {}", v.name, v.state)).collect();
            lines.push(Line::from(format!("vrrp: {}", text.join("  "))));
        }
        f.render_widget(Paragraph::new(lines), bottom);

        let help = match &self.editing {
            Some(text) => Line::from(format!("filter: {text}_   (Enter apply, Esc cancel)")),
            None => Line::from("q quit  sort: n name c conn p pkt b byte a active  / filter  Esc clear  ↑↓ scroll"),
        };
        f.render_widget(Paragraph::new(help).style(Style::new().add_modifier(Modifier::DIM)), keys);
    }
}

/// A keystroke `top` understands, independent of the terminal library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPress {
    /// A character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Ctrl-C.
    CtrlC,
}

/// A count in at most five characters: `950`, `12.3K`, `4.1M`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    if n < 10_000 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if v < 100.0 {
        format!("{v:.1}{}", UNITS[i])
    } else {
        format!("{v:.0}{}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use xvs_api::{Counters, DestSpec, DestState, ServiceSpec, ServiceState, TunnelSpec};

    fn dest(addr: &str, cps: u64, active: u32) -> DestState {
        DestState {
            spec: DestSpec {
                addr: addr.parse().unwrap(),
                port: 80,
                method: "masq".into(),
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
                tunnel: TunnelSpec::default(),
            },
            active,
            inactive: 0,
            persistent: 0,
            overloaded: false,
            stats: Counters::default(),
            rates: Rates { cps, inpps: cps * 5, outpps: cps * 4, inbps: cps * 300, outbps: cps * 900 },
        }
    }

    fn service(vip: &str, dests: Vec<DestState>) -> ServiceState {
        let cps = dests.iter().map(|d| d.rates.cps).sum();
        ServiceState {
            spec: ServiceSpec {
                key: KeySpec::Addr { proto: xvs_api::ProtoName::Tcp, addr: vip.parse().unwrap(), port: 80 },
                scheduler: "wlc".into(),
                flags: 0,
                persistence: None,
                netmask: None,
                one_packet: false,
                pe: None,
                allowed_sources: Vec::new(),
            },
            stats: Counters::default(),
            rates: Rates { cps, ..Rates::default() },
            dests,
        }
    }

    use xvs_api::KeySpec;

    fn snap() -> Snapshot {
        Snapshot {
            services: vec![
                service("198.18.0.100", vec![dest("198.18.2.2", 10, 1), dest("198.18.3.2", 700, 9)]),
                service("198.18.0.101", vec![dest("198.18.4.2", 20_000, 3)]),
            ],
            ..Snapshot::default()
        }
    }

    fn screen(top: &mut Top, snap: &Snapshot) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| top.draw(f, snap, "12:00:00 UTC")).unwrap();
        let buf = t.backend().buffer().clone();
        (0..24).map(|y| (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>()).collect()
    }

    #[test]
    fn services_and_servers_fit_80_by_24() {
        let mut top = Top::new(SortKey::Name, String::new());
        let lines = screen(&mut top, &snap());
        assert!(lines[0].starts_with("xvs top  2 svc 3 rs  sort:name"), "{lines:#?}");
        assert!(lines[1].contains("SERVICE / SERVER") && lines[1].contains("HEALTH"), "{lines:#?}");
        assert!(lines[2].contains("TCP  198.18.0.100:80") && lines[2].contains("wlc"), "{lines:#?}");
        assert!(lines[3].contains("  198.18.2.2:80") && lines[3].contains("masq"), "{lines:#?}");
        // 700 conn/s, 6300 pkt/s, 840000 byte/s, unchecked.
        let cols: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(cols, ["198.18.3.2:80", "masq", "1", "9", "0", "700", "6300", "840K", "-"], "{lines:#?}");
        assert!(lines[23].starts_with("q quit"), "{lines:#?}");
    }

    #[test]
    fn health_and_vrrp_are_shown() {
        let mut s = snap();
        s.health.push(xvs_api::health::ServiceStatus {
            service: s.services[0].spec.key,
            quorum_up: false,
            alive_weight: 1,
            quorum: 2,
            sorry_active: None,
            servers: ["198.18.2.2:80", "198.18.3.2:80"]
                .iter()
                .map(|a| xvs_api::health::ServerStatus {
                    server: a.parse().unwrap(),
                    alive: a.starts_with("198.18.2"),
                    weight: Some(1),
                    checks: Vec::new(),
                })
                .collect(),
        });
        let v: xvs_api::vrrp::VrrpStatus = serde_json::from_value(serde_json::json!({
            "name": "VI_1", "interface": "c0", "vrid": 51, "version": 2, "state": "MASTER", "priority": 100,
            "base_priority": 100, "master": null, "master_priority": null, "group": null, "vips": [],
            "since_s": 3, "adverts_sent": 1, "adverts_received": 0, "adverts_invalid": 0, "transitions": 1,
            "became_master": 1
        }))
        .unwrap();
        s.vrrp.push(v);
        let lines = screen(&mut Top::new(SortKey::Name, String::new()), &s);
        assert!(lines[2].trim_end().ends_with("LOST"), "{lines:#?}");
        assert!(lines[3].trim_end().ends_with("up"), "{lines:#?}");
        assert!(lines[4].trim_end().ends_with("DOWN"), "{lines:#?}");
        assert!(lines[5].trim_end().ends_with('-'), "an unchecked service: {lines:#?}");
        assert_eq!(lines[22].trim_end(), "vrrp: VI_1 MASTER", "{lines:#?}");
    }

    #[test]
    fn keys_sort_filter_and_quit() {
        let mut top = Top::new(SortKey::Name, String::new());
        let s = snap();
        assert!(top.key(KeyPress::Char('c')));
        let rows = top.rows(&s);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        // Services by conn/s, each with its servers by conn/s.
        assert_eq!(
            names,
            ["TCP  198.18.0.101:80", "198.18.4.2:80", "TCP  198.18.0.100:80", "198.18.3.2:80", "198.18.2.2:80"]
        );
        for c in "/3.2".chars() {
            assert!(top.key(KeyPress::Char(c)));
        }
        assert!(screen(&mut top, &s)[23].starts_with("filter: 3.2_"));
        top.key(KeyPress::Enter);
        let names: Vec<String> = top.rows(&s).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["TCP  198.18.0.100:80", "198.18.3.2:80"], "a matching server is shown under its service");
        top.key(KeyPress::Esc);
        assert_eq!(top.rows(&s).len(), 5);
        // Any case; Ctrl-C quits even while a filter is typed.
        top.filter = "tcp  198.18.0.101".into();
        assert_eq!(top.rows(&s).len(), 2);
        top.key(KeyPress::Char('/'));
        assert!(top.key(KeyPress::Char('q')), "typed into the filter");
        assert!(!top.key(KeyPress::CtrlC));
        top.key(KeyPress::Esc);
        assert!(!top.key(KeyPress::Char('q')));
    }

    #[test]
    fn drops_are_shown_as_rates_between_snapshots() {
        let mut top = Top::new(SortKey::Name, String::new());
        let mut s = snap();
        s.drops.insert("no_route".into(), 100);
        s.drops.insert("bad_checksum".into(), 7);
        top.observe(&s, Duration::from_secs(1));
        s.drops.insert("no_route".into(), 300);
        top.observe(&s, Duration::from_secs(2));
        let lines = screen(&mut top, &s);
        assert!(lines.iter().any(|l| l.starts_with("drops: no_route 100/s")), "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("bad_checksum")), "{lines:#?}");
    }

    #[test]
    fn options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = crate::top::parse(&args("--sort conns --filter 198.18 --interval 2")).unwrap();
        assert_eq!((o.sort, o.filter.as_str(), o.interval), (SortKey::Conns, "198.18", Duration::from_secs(2)));
        assert!(crate::top::parse(&args("--sort speed")).unwrap_err().contains("not a column"));
        assert!(crate::top::parse(&args("--interval 0")).unwrap_err().contains("between 0.2 and 60"));
        assert!(crate::top::parse(&args("--bogus")).unwrap_err().contains("unexpected argument --bogus"));
    }

    #[test]
    fn human_numbers_take_five_columns() {
        for (n, s) in [(0, "0"), (9999, "9999"), (12_345, "12.3K"), (999_999, "1000K"), (4_100_000, "4.1M")] {
            assert_eq!(human(n), s);
            assert!(human(n).len() <= 5);
        }
    }
}

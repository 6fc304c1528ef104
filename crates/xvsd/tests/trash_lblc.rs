//! The trash of removed servers under lblc, with the daemon's control and a loaded dataplane
//! (the dataplane schedules, so its lblc table says which removed server an entry names):
//! the server the entry names stays in the trash past the ~180 s that free an unnamed one, and
//! comes back with its identity and its entry (testdata/kernel/trash-lblc-6.12.txt).

use std::net::IpAddr;

use xvs_api::{Request, Response};
use xvs_core::Instant;
use xvs_dataplane::{action, Director, LoadOptions, Publisher, Sweeper};
use xvs_lab::{Netns, PinDir};
use xvsadm::client::Transport;
use xvsadm::run::run;
use xvsd::control::{Control, Dp};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x64];
const RS: [(&str, [u8; 6]); 2] = [("198.18.2.2", [2, 0, 0, 0, 2, 2]), ("198.18.2.3", [2, 0, 0, 0, 2, 3])];

struct At<'a>(&'a mut Control, Instant);

impl Transport for At<'_> {
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        Ok(self.0.handle(req.clone(), self.1))
    }
}

fn adm(c: &mut Control, now: Instant, line: &str) -> String {
    let argv: Vec<String> = std::iter::once("xvsadm").chain(line.split_whitespace()).map(String::from).collect();
    let out = run(&argv, &mut At(c, now), &mut std::io::empty());
    assert_eq!(out.code, 0, "xvsadm {line}: {}", out.stderr);
    out.stdout
}

fn syn(cport: u16, mac_d0: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, mac_d0)
        .ipv4([198, 18, 1, 100], [198, 18, 0, 100], 64)
        .tcp(cport, 80, 1, 65535)
        .syn()
        .write(&mut f, b"")
        .unwrap();
    f
}

#[test]
fn a_server_an_lblc_entry_names_stays_in_the_trash() {
    if !xvs_lab::require_root() {
        return;
    }
    let prefix = xvs_lab::unique_prefix();
    let ns = Netns::new(&prefix);
    xvs_lab::veth(&ns, "d0", &ns, "c0");
    xvs_lab::veth(&ns, "d1", &ns, "r0");
    ns.sysctl("net.ipv4.ip_forward", "1");
    ns.ip(&["addr", "add", "198.18.1.1/24", "dev", "d0"]);
    ns.ip(&["addr", "add", "198.18.2.1/24", "dev", "d1"]);
    ns.ip(&["neigh", "replace", "198.18.1.100", "lladdr", "02:00:00:00:01:64", "dev", "d0", "nud", "permanent"]);
    for (a, m) in RS {
        let mac = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ns.ip(&["neigh", "replace", a, "lladdr", &mac, "dev", "d1", "nud", "permanent"]);
    }
    let (if_client, mac_d0) = (ns.ifindex("d0"), ns.mac("d0"));
    let pins = PinDir::new(&prefix);
    let _entered = ns.enter();
    let mut director = Director::load(LoadOptions::small(pins.path())).expect("load the director");
    let lb = xvs_core::Balancer::default();
    Publisher::write_config(&mut director, &lb.timeouts, &lb.sysctl).unwrap();
    let publisher = Publisher::new(&director);
    let mut c = Control::new(Some(Dp { director, publisher, sweeper: Sweeper::default() }));
    let t0 = Instant::from_secs(1);

    adm(&mut c, t0, "sysctl expire_nodest_conn=1");
    adm(&mut c, t0, "-A -t 198.18.0.100:80 -s lblc");
    for (a, _) in RS {
        adm(&mut c, t0, &format!("-a -t 198.18.0.100:80 -r {a}:80 -m"));
    }
    // One connection: lblc names its server for the VIP.
    let dp = &c.dp.as_ref().unwrap().director;
    let r = dp.test_run(&syn(40000, mac_d0), if_client).unwrap();
    assert_eq!(r.action, action::REDIRECT, "{:?}", dp.reasons());
    let named: IpAddr = IpAddr::from(<[u8; 4]>::try_from(&r.frame[30..34]).unwrap());
    let other = RS.iter().map(|(a, _)| a.parse::<IpAddr>().unwrap()).find(|a| *a != named).unwrap();
    let svc = c.lb.services.find(&xvs_core::ServiceKey::tcp("198.18.0.100".parse().unwrap(), 80)).unwrap();
    let named_id = c.lb.services.find_dest(svc, &named, 80).unwrap();

    // Both deleted: the connection goes with its server (expire_nodest_conn), the trash
    // keeps them; step the daemon's timers 201 s on.
    for (a, _) in RS {
        adm(&mut c, t0, &format!("-d -t 198.18.0.100:80 -r {a}:80"));
    }
    let mut now = t0;
    while now < Instant::from_secs(1 + 201) {
        now += std::time::Duration::from_secs(1);
        c.sync_counters();
        c.timers(now);
    }
    let trash: Vec<IpAddr> = c.lb.services.trash().map(|(_, d)| d.addr()).collect();
    assert_eq!(trash, vec![named], "the server the lblc entry names stays; the other ({other}) was freed");

    // Added back, it is the same server, and the entry sends the VIP's next client to it.
    adm(&mut c, now, &format!("-a -t 198.18.0.100:80 -r {named}:80 -m"));
    adm(&mut c, now, &format!("-a -t 198.18.0.100:80 -r {other}:80 -m"));
    assert_eq!(c.lb.services.find_dest(svc, &named, 80), Some(named_id), "its identity kept");
    let dp = &c.dp.as_ref().unwrap().director;
    let r = dp.test_run(&syn(40001, mac_d0), if_client).unwrap();
    assert_eq!(r.action, action::REDIRECT);
    assert_eq!(IpAddr::from(<[u8; 4]>::try_from(&r.frame[30..34]).unwrap()), named, "the entry still names it");

    // Removed again, then the service leaves lblc: its entries hold nothing any more (the
    // kernel flushes them with the scheduler), so the server is freed as any other.
    adm(&mut c, now, &format!("-d -t 198.18.0.100:80 -r {named}:80"));
    adm(&mut c, now, "-E -t 198.18.0.100:80 -s rr");
    let until = now + std::time::Duration::from_secs(201);
    while now < until {
        now += std::time::Duration::from_secs(1);
        c.sync_counters();
        c.timers(now);
    }
    assert_eq!(c.lb.services.trash().count(), 0, "freed once no lblc entry can hold it");
}

//! Changes that do not fit the dataplane's tables are refused whole, before anything changes,
//! with a real dataplane whose tables are sized to overflow.

use xvs_api::{Request, Response};
use xvs_dataplane::{Director, LoadOptions};
use xvsd::control::Control;

fn toml(services: &[(u16, &str, usize)]) -> xvs_api::config::Config {
    let mut text = String::new();
    for (port, sched, dests) in services {
        text += &format!("[[service]]\naddress = \"198.18.0.1:{port}\"\nscheduler = \"{sched}\"\n");
        for i in 0..*dests {
            text += &format!("[[service.real_server]]\naddress = \"198.18.2.{}\"\nmethod = \"masq\"\n", i + 2);
        }
    }
    xvs_api::config::Config::parse(&text).unwrap()
}

fn apply(c: &mut Control, config: xvs_api::config::Config) -> Response {
    c.handle(Request::Apply { config, dry_run: false }, xvsd::now())
}

#[test]
fn an_apply_that_overflows_the_dataplane_changes_nothing() {
    if !xvs_lab::require_root() {
        return;
    }
    let pins = xvs_lab::PinDir::new(&format!("{}cap", xvs_lab::unique_prefix()));
    let mut o = LoadOptions::small(xvs_abi::pin_dir(pins.path()));
    o.max_services = 4;
    o.max_dests = 16;
    o.table_slots = 8192; // one mh table (4093 buckets), republished, and no more
    let mut c = Control::adopt(Director::load(o).unwrap(), xvsd::now()).unwrap();
    let Response::Applied { changes, .. } = apply(&mut c, toml(&[(80, "rr", 2), (81, "mh", 2)])) else {
        panic!("refused")
    };
    assert_eq!(
        changes,
        vec![
            "+ service TCP  198.18.0.1:80 rr".into(),
            "+   real server 198.18.2.2:80 masq weight 1".into(),
            "+   real server 198.18.2.3:80 masq weight 1".into(),
            "+ service TCP  198.18.0.1:81 mh".into(),
            "+   real server 198.18.2.2:81 masq weight 1".into(),
            "+   real server 198.18.2.3:81 masq weight 1".to_string(),
        ]
    );
    let before = c.specs();
    let published = c.dp.as_ref().unwrap().publisher.published();
    for (what, config, needle) in [
        (
            "five services",
            toml(&[(80, "rr", 1), (81, "mh", 1), (82, "rr", 1), (83, "rr", 1), (84, "rr", 1)]),
            "holds 4 services",
        ),
        ("a second mh table", toml(&[(80, "rr", 2), (81, "mh", 2), (82, "mh", 1)]), "scheduler buckets"),
        ("too many real servers", toml(&[(80, "rr", 9), (81, "mh", 9)]), "--max-dests"),
    ] {
        let Response::Error(e) = apply(&mut c, config) else { panic!("{what}: accepted") };
        assert_eq!(e.errno, "ENOMEM", "{what}: {e:?}");
        assert!(e.message.contains(needle) && e.message.contains("nothing was changed"), "{what}: {}", e.message);
        assert!(!e.partial);
        assert_eq!(c.specs(), before, "{what}: the configuration changed");
        assert_eq!(c.dp.as_ref().unwrap().publisher.published(), published, "{what}: the dataplane changed");
    }
    // A dry run says the same.
    let r = c.handle(
        Request::Apply { config: toml(&[(80, "rr", 1), (81, "mh", 1), (82, "mh", 1)]), dry_run: true },
        xvsd::now(),
    );
    assert!(matches!(r, Response::Error(ref e) if e.errno == "ENOMEM"), "{r:?}");
}

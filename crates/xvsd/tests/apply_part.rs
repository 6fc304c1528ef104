//! `xvsadm apply` of a file applied before sends only the services that changed, and the
//! result is always what applying the whole file gives: checked as xvsadm runs against xvsd's
//! control (in process, without a dataplane), with xvsadm's memory of the last file in a
//! directory of the test's own.

use std::path::PathBuf;

use xvs_api::{Request, Response};
use xvs_core::Instant;
use xvsadm::client::Transport;
use xvsadm::run::{run, Outcome};
use xvsd::control::Control;

/// xvsd's control behind xvsadm's transport, recording which kind of apply was sent.
struct InProcess {
    control: Control,
    memory: Option<PathBuf>,
    sent: Vec<&'static str>,
}

impl Transport for InProcess {
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        match req {
            Request::Apply { .. } => self.sent.push("whole"),
            Request::ApplyPart { .. } => self.sent.push("part"),
            _ => {}
        }
        Ok(self.control.handle(req.clone(), Instant::from_nanos(1_000_000_000)))
    }

    fn applied_memory(&self) -> Option<PathBuf> {
        self.memory.clone()
    }
}

impl InProcess {
    fn run(&mut self, line: &str) -> Outcome {
        let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
        run(&argv, self, &mut std::io::empty())
    }

    /// Applies `text` as the file `file`: the output, and which applies were sent.
    fn apply(&mut self, file: &std::path::Path, text: &str, extra: &str) -> (Outcome, Vec<&'static str>) {
        std::fs::write(file, text).unwrap();
        self.sent.clear();
        let out = self.run(&format!("xvsadm apply -f {} {extra}", file.display()));
        (out, std::mem::take(&mut self.sent))
    }

    fn table(&mut self) -> String {
        self.run("ipvsadm -S -n").stdout
    }
}

/// The table a fresh daemon has after applying `text` whole.
fn whole(text: &str, dir: &std::path::Path) -> String {
    let mut fresh = InProcess { control: Control::new(None), memory: None, sent: vec![] };
    let f = dir.join("fresh.toml");
    let (out, sent) = fresh.apply(&f, text, "");
    assert_eq!((out.code, sent), (0, vec!["whole"]), "{}", out.stderr);
    fresh.table()
}

fn service(port: u16, weight: u32, extra: &str) -> String {
    format!(
        "[[service]]\naddress = \"198.18.0.1:{port}\"\nscheduler = \"wrr\"\n{extra}\n  [[service.real_server]]\n  address = \"198.18.2.2\"\n  method = \"masq\"\n  weight = {weight}\n  [[service.real_server]]\n  address = \"198.18.2.3\"\n  method = \"masq\"\n\n"
    )
}

fn file(services: &[String]) -> String {
    "[timeouts]\ntcp = 900\n\n".to_string() + &services.concat()
}

#[test]
fn an_apply_sends_only_what_changed_and_ends_as_the_whole_file_would() {
    let dir = std::env::temp_dir().join(format!("xvs-apply-part-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("xvs.toml");
    let mut x = InProcess { control: Control::new(None), memory: Some(dir.join("xvsd.sock.applied")), sent: vec![] };

    // The first apply: the whole file, remembered.
    let v1 = file(&[service(80, 1, ""), service(81, 1, ""), service(82, 1, "")]);
    let (out, sent) = x.apply(&f, &v1, "");
    assert_eq!((out.code, sent), (0, vec!["whole"]), "{}", out.stderr);
    assert!(x.memory.as_ref().unwrap().exists());

    // One weight edited, one service removed, one added: sent as a part, reported as the
    // whole file's apply reports it, and the table is the whole file's.
    let v2 = file(&[service(80, 1, ""), service(81, 7, ""), service(83, 1, "")]);
    let (out, sent) = x.apply(&f, &v2, "--dry-run");
    assert_eq!((out.code, sent), (0, vec!["part"]), "{}", out.stderr);
    assert!(out.stdout.ends_with("(dry run: nothing changed)\n"), "{}", out.stdout);
    assert_eq!(x.table(), whole(&v1, &dir), "a dry run changes nothing");
    let (out, sent) = x.apply(&f, &v2, "");
    assert_eq!((out.code, sent), (0, vec!["part"]), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "- service TCP  198.18.0.1:82\n~   real server 198.18.2.2:81 masq weight 7 of TCP  198.18.0.1:81\n\
         + service TCP  198.18.0.1:83 wrr\n+   real server 198.18.2.2:83 masq weight 1\n\
         +   real server 198.18.2.3:83 masq weight 1\n"
    );
    assert_eq!(x.table(), whole(&v2, &dir));
    let (out, sent) = x.apply(&f, &v2, "");
    assert_eq!((out.stdout.as_str(), sent), ("no changes\n", vec!["part"]));

    // The operator changes the table in between: the part is refused, the whole file is
    // applied, and (as always with apply) the operator's server goes.
    assert_eq!(x.run("ipvsadm -a -t 198.18.0.1:80 -r 198.18.2.9 -m").code, 0);
    let v3 = file(&[service(80, 2, ""), service(81, 7, ""), service(83, 1, "")]);
    let (out, sent) = x.apply(&f, &v3, "");
    assert_eq!((out.code, sent), (0, vec!["part", "whole"]), "{}", out.stderr);
    assert!(out.stdout.contains("-   real server 198.18.2.9:80"), "{}", out.stdout);
    assert_eq!(x.table(), whole(&v3, &dir));

    // A part is no change of a batch (it would skip the token's check).
    let part = Request::ApplyPart { base: "x".into(), removed: vec![], added: vec![], dry_run: false };
    let r = x.control.handle(Request::Batch { requests: vec![part] }, Instant::from_nanos(1_000_000_000));
    assert!(matches!(r, Response::Error(ref e) if e.errno == "EINVAL"), "{r:?}");

    // A restarted daemon knows no earlier token: the whole file.
    x.control = Control::new(None);
    let (out, sent) = x.apply(&f, &v3, "");
    assert_eq!((out.code, sent), (0, vec!["part", "whole"]), "{}", out.stderr);
    let (out, sent) = x.apply(&f, &v3, "");
    assert_eq!((out.stdout.as_str(), sent), ("no changes\n", vec!["part"]));

    // A service listed twice: refused with the whole file's message, nothing changed.
    let dup = file(&[service(80, 2, ""), service(81, 7, ""), service(83, 1, ""), service(81, 3, "")]);
    let (out, sent) = x.apply(&f, &dup, "");
    assert_eq!((out.code, sent), (1, vec!["part"]), "{}", out.stdout);
    assert!(out.stderr.contains("service #4: the same service is listed twice"), "{}", out.stderr);
    assert_eq!(x.table(), whole(&v3, &dir));

    // A check on a changed service: the whole file (health is planned over all of it).
    let check = "  [[service.real_server.check]]\n  type = \"tcp\"\n";
    let v4 = file(&[service(80, 2, ""), service(81, 7, ""), service(83, 1, "")]).replace(
        "address = \"198.18.2.3\"\n  method = \"masq\"\n\n",
        &format!("address = \"198.18.2.3\"\n  method = \"masq\"\n{check}\n"),
    );
    let (out, sent) = x.apply(&f, &v4, "");
    assert_eq!((out.code, sent), (0, vec!["part", "whole"]), "{}", out.stderr);
    assert!(!x.memory.as_ref().unwrap().exists(), "no token after a file with checks");
    let (_, sent) = x.apply(&f, &v3, "");
    assert_eq!(sent, vec!["whole"]);
    assert_eq!(x.table(), whole(&v3, &dir));

    // A service added in the middle of the file is last in the table: the changes are listed
    // in the table's order, as a whole apply lists them.
    let mut y = InProcess { control: Control::new(None), memory: None, sent: vec![] };
    let g = dir.join("y.toml");
    let (a, b, c, m) = (service(90, 1, ""), service(91, 1, ""), service(92, 1, ""), service(93, 1, ""));
    for v in [file(&[a.clone(), b.clone(), c.clone()]), file(&[a.clone(), m.clone(), b.clone(), c.clone()])] {
        assert_eq!(x.apply(&f, &v, "").0.code, 0);
        assert_eq!(y.apply(&g, &v, "").0.code, 0);
    }
    let v = file(&[a, b]);
    let ((part, sent), (whole, _)) = (x.apply(&f, &v, ""), y.apply(&g, &v, ""));
    assert_eq!(sent, vec!["part"]);
    assert_eq!(part.stdout, whole.stdout);
    assert!(part.stdout.starts_with("- service TCP  198.18.0.1:92\n- service TCP  198.18.0.1:93\n"), "{}", part.stdout);

    // Another head: the whole file.
    let (out, sent) = x.apply(&f, &v3.replace("tcp = 900", "tcp = 901"), "");
    assert_eq!((out.code, sent), (0, vec!["whole"]), "{}", out.stderr);
    assert!(out.stdout.contains("~ timeouts 901"), "{}", out.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}

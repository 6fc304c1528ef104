//! Prints what one connection costs in kernel memory: loads the director, fills each
//! connection table with N entries (default 100,000) and reads the kernel's memory figure
//! (memlock, which for tables without preallocation follows the entries present) before and
//! after. The difference per entry includes the kernel's own element overhead.

use xvs_abi as abi;
use xvs_dataplane::{Director, LoadOptions};

fn memlock(name: &str) -> u64 {
    let out = std::process::Command::new("bpftool").args(["map", "show", "name", name]).output().expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "memlock")
        .nth(1)
        .and_then(|v| v.trim_end_matches('B').parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/xvs-memlock-{}", std::process::id()));
    let mut o = LoadOptions::new(&pins);
    o.max_conns = n;
    let mut dp = Director::load(o).expect("load the director");
    let before: Vec<u64> = ["xvs_conn4", "xvs_conn6", "xvs_nat4", "xvs_nat6"].iter().map(|m| memlock(m)).collect();
    for i in 0..n {
        let k4 = abi::Conn4Key { caddr: i, vaddr: 1, cport: 1, vport: 80, proto: 6, pad: [0; 3] };
        let k6 = abi::Conn6Key { caddr: [i, 0, 0, 0], vaddr: [1, 0, 0, 0], cport: 1, vport: 80, proto: 6, pad: [0; 3] };
        dp.maps.conn4.insert(k4, abi::Conn::default(), 0).expect("insert");
        dp.maps.conn6.insert(k6, abi::Conn::default(), 0).expect("insert");
        let n4 = abi::Nat4Key { raddr: i, caddr: 1, rport: 1, cport: 80, proto: 6, pad: [0; 3] };
        let n6 = abi::Nat6Key { raddr: [i, 0, 0, 0], caddr: [1, 0, 0, 0], rport: 1, cport: 80, proto: 6, pad: [0; 3] };
        dp.maps.nat4.insert(n4, k4, 0).expect("insert");
        dp.maps.nat6.insert(n6, k6, 0).expect("insert");
    }
    for (i, name) in ["xvs_conn4", "xvs_conn6", "xvs_nat4", "xvs_nat6"].iter().enumerate() {
        let after = memlock(name);
        let per = (after.saturating_sub(before[i])) as f64 / f64::from(n);
        println!("{name}: {} bytes empty, {after} with {n} entries = {per:.1} bytes per entry", before[i]);
    }
    drop(dp);
    let _ = std::fs::remove_dir_all(&pins);
}

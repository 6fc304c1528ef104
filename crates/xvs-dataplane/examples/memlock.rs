//! Prints the kernel's memory figure (memlock) of the connection tables at a given size: the
//! per-connection cost including the kernel's own element overhead.

use xvs_dataplane::{Director, LoadOptions};

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_048_576);
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/xvs-memlock-{}", std::process::id()));
    let mut o = LoadOptions::new(&pins);
    o.max_conns = n;
    let _dp = Director::load(o).expect("load the director");
    let out = std::process::Command::new("bpftool").args(["map", "show"]).output().expect("run bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        for name in ["xvs_conn4", "xvs_conn6", "xvs_nat4", "xvs_nat6"] {
            if l.contains(&format!("name {name} ")) {
                let next = lines.get(i + 1).copied().unwrap_or("");
                let mem: u64 = next
                    .split_whitespace()
                    .skip_while(|w| *w != "memlock")
                    .nth(1)
                    .and_then(|v| v.trim_end_matches('B').parse().ok())
                    .unwrap_or(0);
                println!("{name}: {mem} bytes for {n} entries = {:.1} bytes per entry", mem as f64 / f64::from(n));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&pins);
}

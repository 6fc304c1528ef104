//! `xvs-package OUTDIR`: the man pages and shell completions the Debian package ships
//! (`scripts/package.sh`), generated from the same clap definitions the binaries parse with,
//! so they cannot drift from `--help`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// xvsadm's command line as a man page describes it: ipvsadm's options (clap's picture of
/// them) and the commands xvs adds, which xvsadm parses before clap sees the line.
fn xvsadm() -> clap::Command {
    xvsadm::args::Args::command()
        .version(env!("CARGO_PKG_VERSION"))
        .about("administer the xvs load balancer (ipvsadm compatible)")
        .long_about(
            "xvsadm configures and lists the virtual services of xvsd, the xvs layer-4 load balancer, \
             with ipvsadm's options, output formats, messages and exit codes: scripts written for \
             ipvsadm work unchanged. It talks to xvsd over its Unix socket (/run/xvs/xvsd.sock, or \
             $XVS_SOCKET).",
        )
}

/// The commands xvs adds to ipvsadm's, for xvsadm's page.
const XVS_COMMANDS: &[(&str, &str)] = &[
    (
        "xvsadm apply -f FILE [--dry-run]",
        "Replace the whole configuration at once (TOML, YAML or a keepalived.conf). A TOML file applied before \
         through the same socket sends only the services whose text changed, while xvsd's table is still the \
         one that apply left (xvsadm remembers the file in $XVS_SOCKET.applied); otherwise the whole file.",
    ),
    ("xvsadm health [--json]", "Health of the checked real servers."),
    ("xvsadm vrrp [--json]", "VRRP instances, their state and counters."),
    (
        "xvsadm top [--sort COLUMN] [--filter TEXT] [--interval SECONDS]",
        "Live view of services and real servers: rates, connections, weights, health, drops by reason. \
         Keys: n c p b a sort by name, conn/s, pkt/s, byte/s, active; / filter; Esc clears; q quits.",
    ),
    (
        "xvsadm trace [CLIENT[:PORT]] [-t|-u|--sctp-service VIP:PORT] [--count N] [--seconds N] [--json]",
        "Each decision the dataplane takes for the packets of a client (both ways) or to a service: \
         the service, the connection met or made, the scheduler's pick and why, the template, the \
         rewrite, the state, the verdict and the reason. One line (or JSON object) per packet.",
    ),
    ("xvsadm sysctl [--json | NAME=VALUE...]", "IPVS's net.ipv4.vs.* settings."),
    ("xvsadm bgp [--json]", "VIPs announced to routers through BIRD, and why."),
    ("xvsadm bgp drain|undrain [VIP]", "Withdraw this director (or one VIP) from the routers, and keep it so."),
];

/// Files the package installs, for both pages.
const FILES: &[(&str, &str)] = &[
    ("/etc/default/xvsd", "XVSD_OPTS: xvsd's options (interfaces), read by xvsd.service."),
    ("/etc/xvs/xvs.toml", "The declarative configuration, used with --config."),
    ("/run/xvs/xvsd.sock", "xvsd's control socket (XVS_SOCKET overrides it for xvsadm)."),
    ("http://127.0.0.1:9642/", "The status page; /metrics for Prometheus, /status.json for tools."),
];

/// A roff section of tagged paragraphs.
fn section(title: &str, items: &[(&str, &str)]) -> String {
    let esc = |t: &str| t.replace('\\', "\\e").replace('-', "\\-");
    let mut s = format!(".SH \"{title}\"\n");
    for (tag, text) in items {
        s += &format!(".TP\n\\fB{}\\fR\n{}\n", esc(tag), esc(text));
    }
    s
}

fn xvsd() -> clap::Command {
    xvsd::options::Options::command()
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
    std::fs::write(path, bytes)
}

fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: xvs-package OUTDIR   (writes OUTDIR/man/*.8 and OUTDIR/completions/*)");
        std::process::exit(2);
    };
    let out = Path::new(&out);
    let result = (|| -> std::io::Result<()> {
        for mut cmd in [xvsd(), xvsadm()] {
            let name = cmd.get_name().to_string();
            let mut page = Vec::new();
            let man = clap_mangen::Man::new(cmd.clone()).section("8").manual("xvs");
            man.render_title(&mut page)?;
            man.render_name_section(&mut page)?;
            man.render_synopsis_section(&mut page)?;
            man.render_description_section(&mut page)?;
            man.render_options_section(&mut page)?;
            if name == "xvsadm" {
                page.extend(section("XVS COMMANDS", XVS_COMMANDS).bytes());
            }
            page.extend(section("FILES", FILES).bytes());
            page.extend(section("SEE ALSO", &[("ipvsadm(8), keepalived(8)", "")]).bytes());
            man.render_version_section(&mut page)?;
            write(&out.join(format!("man/{name}.8")), &page)?;
            for (shell, file) in
                [(Shell::Bash, name.clone()), (Shell::Zsh, format!("_{name}")), (Shell::Fish, format!("{name}.fish"))]
            {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, &name, &mut script);
                write(&out.join(format!("completions/{shell}/{file}")), &script)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("xvs-package: {}: {e}", out.display());
        std::process::exit(1);
    }
}

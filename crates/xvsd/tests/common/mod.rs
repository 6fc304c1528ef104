//! Pieces the lab tests share. Each test file compiles its own copy and uses part of it.
#![allow(dead_code)]

pub mod hold;

use std::path::Path;
use std::process::{Child, Stdio};

use xvs_lab::Netns;

/// nginx in `ns` on port 80, answering every request with `name` and keeping connections
/// alive (for wrk's keep-alive connections across changes); its files under `dir`.
pub fn nginx(ns: &Netns, dir: &Path, name: &str) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\ndaemon off;\n\
             events {{ worker_connections 512; }}\n\
             http {{ access_log off; client_body_temp_path {p}; proxy_temp_path {p}; fastcgi_temp_path {p};\n\
             server {{ listen 80; keepalive_timeout 120s; keepalive_requests 1000000;\n\
             location / {{ return 200 \"{name}\\n\"; }} }} }}\n",
            p = dir.display(),
        ),
    )
    .unwrap();
    ns.command("nginx")
        .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

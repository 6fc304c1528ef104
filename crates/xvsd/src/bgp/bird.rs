//! BIRD's side: the include file and the control socket.

use std::collections::BTreeSet;
use std::net::IpAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use xvs_announce::bird::{self, Reply, ReplyReader};

use super::Plan;

/// Writes the file for `routes` and has BIRD read it; checks that BIRD's configuration
/// includes it.
pub async fn push(plan: &Plan, routes: &BTreeSet<IpAddr>) -> Result<(), String> {
    let text = bird::render(routes, &plan.interface);
    write_file(plan, &text).map_err(|e| format!("write {}: {e}", plan.file.display()))?;
    let s = UnixStream::connect(&plan.socket)
        .await
        .map_err(|e| format!("connect to BIRD's control socket {}: {e}", plan.socket.display()))?;
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut ask = async |cmd: Option<&str>| -> Result<Reply, String> {
        if let Some(c) = cmd {
            w.write_all(format!("{c}\n").as_bytes()).await.map_err(|e| format!("send to BIRD: {e}"))?;
        }
        let mut reader = ReplyReader::default();
        loop {
            let Some(line) = lines.next_line().await.map_err(|e| format!("read from BIRD: {e}"))? else {
                return Err("BIRD closed the control connection".into());
            };
            if let Some(reply) = reader.push_line(&line)? {
                return Ok(reply);
            }
        }
    };
    bird::check_greeting(&ask(None).await?)?;
    bird::check_configure(&ask(Some("configure")).await?)?;
    bird::check_protocols(&ask(Some(bird::SHOW_PROTOCOLS)).await?, &plan.file.display().to_string())
}

/// Replaces the file at once (a BIRD reading it meanwhile sees the old or the new one).
fn write_file(plan: &Plan, text: &str) -> std::io::Result<()> {
    if let Some(dir) = plan.file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = plan.file.with_extension("xvs-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &plan.file)
}

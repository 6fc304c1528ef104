//! Scripts as keepalived runs them: notify and quorum scripts and MISC_CHECK.
//!
//! - They run as `global_defs script_user USER [GROUP]`; without it as `keepalived_script` when
//!   that user exists, else as root (keepalived's default).
//! - With `enable_script_security`, a script is refused when any part of its path (the file and
//!   every directory above it) could be changed by someone other than root and the user it runs
//!   as (keepalived's "SECURITY VIOLATION"): the configuration is refused at once, naming the
//!   path, rather than the script silently disabled.
//! - Each runs in its own process group with a clean environment (`PATH` only), is stopped with
//!   its whole group when its time is up (SIGTERM, then SIGKILL 2 s later), and at most
//!   [`MAX_RUNNING`] notify scripts run at once; what they print goes to the log.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment scripts get: nothing of the daemon's but a fixed search path.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Notify and quorum scripts running at once, at most (more wait their turn).
pub const MAX_RUNNING: usize = 16;

/// Output kept from one script run (the log gets at most this much).
pub const MAX_OUTPUT: usize = 4096;

/// Who scripts run as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The user's name, for messages.
    pub name: String,
}

impl RunAs {
    /// root.
    pub fn root() -> RunAs {
        RunAs { uid: 0, gid: 0, name: "root".into() }
    }

    /// Resolves `user[:group]`.
    pub fn lookup(spec: &str) -> Result<RunAs, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let u = match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => u,
            _ => return Err(format!("script user '{user}' does not exist")),
        };
        let gid = match group {
            None => u.gid.as_raw(),
            Some(g) => match nix::unistd::Group::from_name(g) {
                Ok(Some(g)) => g.gid.as_raw(),
                _ => return Err(format!("script group '{g}' does not exist")),
            },
        };
        Ok(RunAs { uid: u.uid.as_raw(), gid, name: user.into() })
    }
}

/// How a configuration's scripts run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptPolicy {
    /// The default user.
    pub run_as: RunAs,
    /// `enable_script_security`.
    pub security: bool,
}

impl Default for ScriptPolicy {
    fn default() -> Self {
        ScriptPolicy { run_as: RunAs::root(), security: false }
    }
}

impl ScriptPolicy {
    /// From `script_user` (`user[:group]`) and `enable_script_security`, with keepalived's
    /// default user.
    pub fn new(script_user: Option<&str>, security: bool) -> Result<ScriptPolicy, String> {
        let run_as = match script_user {
            Some(u) => RunAs::lookup(u)?,
            None => RunAs::lookup("keepalived_script").unwrap_or_else(|_| RunAs::root()),
        };
        Ok(ScriptPolicy { run_as, security })
    }

    /// Refuses `command` if, with script security on, someone other than root and `run_as`
    /// could change what it runs.
    pub fn check(&self, command: &str, run_as: &RunAs) -> Result<(), String> {
        if !self.security {
            return Ok(());
        }
        let Some(program) = command.split_whitespace().next() else {
            return Err("an empty script command".into());
        };
        let path = resolve(program).ok_or_else(|| format!("script '{program}' is not found (searched {PATH})"))?;
        insecure_part(&path, run_as).map_or(Ok(()), |why| {
            Err(format!("script '{command}' refused (enable_script_security): {why}; it would run as {}", run_as.name))
        })
    }
}

/// The file a command's first word names: as given when it has a slash, else searched in
/// [`PATH`].
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    PATH.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// The first part of `path` (the file, then each directory up to /) that someone other than
/// root and `run_as` could change, and how.
fn insecure_part(path: &Path, run_as: &RunAs) -> Option<String> {
    let path = std::fs::canonicalize(path).ok().unwrap_or_else(|| path.to_path_buf());
    let trusted = |uid: u32| uid == 0 || uid == run_as.uid;
    let mut child_owner: Option<u32> = None;
    let mut at = Some(path.as_path());
    while let Some(p) = at {
        let Ok(m) = std::fs::metadata(p) else {
            return Some(format!("{} cannot be examined", p.display()));
        };
        let mode = m.mode();
        if !trusted(m.uid()) {
            return Some(format!("{} is owned by uid {}", p.display(), m.uid()));
        }
        // A sticky directory (/tmp) lets others add files, not replace one they do not own.
        let sticky_ok = m.is_dir() && mode & 0o1000 != 0 && child_owner.is_some_and(trusted);
        if mode & 0o002 != 0 && !sticky_ok {
            return Some(format!("{} is writable by everyone", p.display()));
        }
        if mode & 0o020 != 0 && m.gid() != 0 && m.gid() != run_as.gid && !sticky_ok {
            return Some(format!("{} is writable by group {}", p.display(), m.gid()));
        }
        child_owner = Some(m.uid());
        at = p.parent();
    }
    None
}

/// What a finished script left: its exit code (None: killed) and what it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    /// Exit code, or None when it was killed (by its timeout or a signal).
    pub code: Option<i32>,
    /// True when its time ran out.
    pub timed_out: bool,
    /// Standard output and error, interleaved by stream, at most [`MAX_OUTPUT`] bytes.
    pub output: String,
}

/// Runs `command` with `sh -c` as `run_as`, in its own process group, with a clean environment,
/// for at most `timeout` (then SIGTERM to the group, SIGKILL 2 s later).
pub async fn run(command: &str, run_as: &RunAs, timeout: Duration) -> Result<Ran, String> {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if run_as.uid != 0 || run_as.gid != 0 {
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {command}: {e}"))?;
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read = async move {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let limit = MAX_OUTPUT as u64;
        let ra = async {
            if let Some(o) = out.as_mut() {
                let _ = o.take(limit).read_to_end(&mut a).await;
            }
        };
        let rb = async {
            if let Some(e) = err.as_mut() {
                let _ = e.take(limit).read_to_end(&mut b).await;
            }
        };
        tokio::join!(ra, rb);
        a.extend_from_slice(&b);
        a.truncate(MAX_OUTPUT);
        String::from_utf8_lossy(&a).trim_end().to_string()
    };
    let waited = tokio::time::timeout(timeout, async { tokio::join!(child.wait(), read) }).await;
    match waited {
        Ok((status, output)) => {
            let status = status.map_err(|e| format!("waiting for {command}: {e}"))?;
            Ok(Ran { code: status.code(), timed_out: false, output })
        }
        Err(_) => {
            use nix::sys::signal::{killpg, Signal};
            if let Some(pid) = pid {
                let pg = nix::unistd::Pid::from_raw(pid as i32);
                let _ = killpg(pg, Signal::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                    let _ = killpg(pg, Signal::SIGKILL);
                }
            }
            let _ = child.kill().await;
            Ok(Ran { code: None, timed_out: true, output: String::new() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn script_security_refuses_what_others_could_change() {
        if !root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("xvs-script-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = dir.join("notify.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        let on = ScriptPolicy { run_as: RunAs::root(), security: true };
        let cmd = format!("{} up", script.display());
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(on.check(&cmd, &on.run_as), Ok(()), "root's 0755 script in root's 0755 directories");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o757)).unwrap();
        let e = on.check(&cmd, &on.run_as).unwrap_err();
        assert!(e.contains("notify.sh is writable by everyone"), "{e}");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = on.check(&cmd, &on.run_as).unwrap_err();
        assert!(e.contains("is writable by everyone"), "{e}");
        // Without script security nothing is checked; a bare name is searched in PATH.
        let off = ScriptPolicy { run_as: RunAs::root(), security: false };
        assert_eq!(off.check(&cmd, &off.run_as), Ok(()));
        assert_eq!(on.check("true", &on.run_as), Ok(()));
        assert!(on.check("no-such-program-xvs", &on.run_as).unwrap_err().contains("not found"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn scripts_run_as_their_user_with_a_clean_environment_and_die_with_their_group() {
        if !root() {
            return;
        }
        let nobody = RunAs::lookup("nobody").unwrap();
        std::env::set_var("XVS_SECRET_FOR_TEST", "leak");
        let r = run("id -u; env | sort; echo oops >&2; exit 3", &nobody, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r.code, Some(3));
        let lines: Vec<&str> = r.output.lines().collect();
        assert_eq!(lines[0], nobody.uid.to_string(), "{}", r.output);
        assert!(!r.output.contains("XVS_SECRET_FOR_TEST"), "{}", r.output);
        assert!(r.output.contains(&format!("PATH={PATH}")) && r.output.contains("oops"), "{}", r.output);
        // A script that outlives its time is stopped with what it started.
        let marker = std::env::temp_dir().join(format!("xvs-script-grp-{}", std::process::id()));
        let cmd = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let r = run(&cmd, &RunAs::root(), Duration::from_millis(500)).await.unwrap();
        assert!(r.timed_out && r.code.is_none());
        let child: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|st| st.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
                .unwrap_or(false)
        };
        let start = std::time::Instant::now();
        while alive() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(), "the script's child survived its timeout");
        let _ = std::fs::remove_file(&marker);
    }
}

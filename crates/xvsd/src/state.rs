//! State that must outlive one xvsd process but is not in the pinned maps: the health
//! checkers' states (so a restart does not put failed servers back in service), kept in a small
//! JSON file written atomically.

use std::path::{Path, PathBuf};

use xvs_health::Saved;

/// The default state file for the pin directory `pins` (under /run, like the pins it goes with:
/// both survive a restart of xvsd and neither survives a reboot).
pub fn default_path(pins: &Path) -> PathBuf {
    let name: String = pins.to_string_lossy().chars().map(|c| if c == '/' { '_' } else { c }).collect();
    Path::new("/run/xvs/state").join(format!("{name}.health.json"))
}

/// The health state a previous xvsd saved, if any; a file that cannot be read is logged and
/// ignored (the checks then start as keepalived starts them).
pub fn load(path: &Path) -> Option<Saved> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the saved health state; checks start afresh");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the saved health state is damaged; checks start afresh");
            None
        }
    }
}

/// Writes `saved` to `path` atomically (a temporary file renamed over it).
pub fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

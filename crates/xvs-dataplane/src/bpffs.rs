//! Makes sure the BPF filesystem is mounted where pins go.
//!
//! A freshly booted Debian 12 does not mount bpffs at `/sys/fs/bpf` (systemd does so only when
//! a unit asks); pinning there then fails with ENOENT. As Cilium's agent does, xvs mounts it
//! itself when it is absent.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Error;

/// Where the kernel's BPF filesystem is normally mounted.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// True when `path` lies on a bpffs mount.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a writable statfs buffer.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    // SAFETY: statfs filled the buffer when it returned 0.
    rc == 0 && unsafe { st.assume_init() }.f_type == BPF_FS_MAGIC
}

/// Mounts bpffs at `/sys/fs/bpf` when `pin_dir` is under it and it is not mounted yet.
/// Returns `Ok(true)` when this call mounted it (callers say so in their log).
pub fn ensure_mounted(pin_dir: &Path) -> Result<bool, Error> {
    let root = Path::new(DEFAULT_MOUNT);
    // Two threads mounting at once would stack two mounts, the second hiding the first's pins.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    if !pin_dir.starts_with(root) || is_bpffs(root) {
        return Ok(false);
    }
    if !root.is_dir() {
        return Err(Error::Unsupported(format!("{DEFAULT_MOUNT} does not exist: is sysfs mounted?")));
    }
    let src = CString::new("bpf").expect("literal");
    let target = CString::new(DEFAULT_MOUNT).expect("literal");
    let opts = CString::new("mode=0700").expect("literal");
    // SAFETY: every argument is a valid NUL-terminated string that outlives the call.
    let rc =
        unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, opts.as_ptr() as *const libc::c_void) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // Another process may have mounted it a moment ago.
        if is_bpffs(root) {
            return Ok(false);
        }
        return Err(Error::Unsupported(format!("mount bpffs at {DEFAULT_MOUNT}: {e}")));
    }
    Ok(true)
}

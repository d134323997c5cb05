//! The data directory is its owner's alone: the salt protects erased people's hashed ids and
//! numbers, and the log and snapshots hold every lead. The directory is made 0700 and every
//! file in it 0600, whatever the umask; one found open to others at start-up is named in a
//! warning that says how to close it.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tracing::warn;

/// Creates `dir` (and any missing parent) readable by its owner alone.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Options that create a file readable and writable by its owner alone.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

/// Writes a new file, or replaces one, readable by its owner alone.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    options().write(true).create(true).truncate(true).open(path)?.write_all(bytes)
}

/// Warns about each of `paths` that others than its owner may read, write or enter.
pub fn warn_if_open(paths: &[&Path]) {
    for path in paths {
        let Ok(meta) = path.metadata() else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let wanted = if meta.is_dir() { "700" } else { "600" };
            warn!(
                "{} is open to other local users (mode {mode:o}): the data directory holds every lead, and \
                 its salt protects erased people's ids and numbers; close it with `chmod {wanted} {}`, and \
                 `chmod 600` each file in the data directory",
                path.display(),
                path.display()
            );
        }
    }
}

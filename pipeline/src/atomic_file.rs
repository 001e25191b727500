//! The one way files in the data dir are replaced: write a temp file beside the target, then
//! rename it over, so a reader (or a process after a crash) sees the old bytes or the new ones,
//! never a mix. How far the new bytes must survive is the caller's explicit choice.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use crate::error::{IoContext, Result};

/// What a replaced file survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A crash of this process: the rename alone. For figures rewritten on every refresh
    /// (usage.json), where a power cut costing the last update is cheaper than an fsync each time.
    Process,
    /// Power loss too: the file is fsynced before the rename and its directory after it. For
    /// state another run resumes from (batch run files).
    PowerLoss,
}

/// Replace `path` with `bytes`.
pub fn write(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Beside the target (same filesystem, so the rename is atomic), one per process.
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    // Owner-only: run files, spooled responses and usage are nobody else's to read.
    let mut f = owner_only_file(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    if durability == Durability::PowerLoss {
        f.sync_all().at(&tmp)?;
    }
    drop(f);
    rename(&tmp, path, durability)
}

/// Rename `from` over `to`; with `PowerLoss`, the directory is fsynced so the rename stays.
pub fn rename(from: &Path, to: &Path, durability: Durability) -> Result<()> {
    std::fs::rename(from, to).at(to)?;
    if durability == Durability::PowerLoss {
        fsync_dir(to.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// A new file, readable and writable by its owner only (0600).
pub fn owner_only_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// `dir` and its missing parents, owner-only (0700).
pub fn owner_only_dirs(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)
}

/// fsync a directory so a rename or link in it survives power loss.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.json");
        for d in [Durability::Process, Durability::PowerLoss] {
            write(&p, b"old", d).unwrap();
            write(&p, b"new bytes", d).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"new bytes");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["run.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/usage.json");
        let e = write(&p, b"x", Durability::PowerLoss)
            .unwrap_err()
            .to_string();
        assert!(e.contains("usage.json"), "{e}");
    }
}

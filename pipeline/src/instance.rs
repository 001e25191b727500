//! One writer per data dir. The process that runs the pipeline holds an exclusive advisory
//! lock on `<data_dir>/ecomops.lock` and writes its PID there. The kernel drops the lock when
//! the process dies however it dies, so a lock left by a killed process is simply taken over;
//! the PID it left behind is reported as stale.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub const LOCK_FILE: &str = "ecomops.lock";
pub const SOCKET_FILE: &str = "control.sock";

/// The held lock; dropping it releases the data dir.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
    /// PID of a previous holder that died without releasing (its PID was still in the file).
    pub took_over_from: Option<u32>,
}

impl InstanceLock {
    /// Take the data dir, creating it if needed. `Error::AlreadyRunning` names the live holder.
    pub fn acquire(data_dir: &Path) -> Result<InstanceLock> {
        fs::create_dir_all(data_dir).at(data_dir)?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        // std's File::try_lock is flock(2) on Linux: released by the kernel on process death.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file).unwrap_or(0);
                return Err(Error::AlreadyRunning {
                    data_dir: data_dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let me = std::process::id();
        let took_over_from = read_pid(&mut file).filter(|&p| p != me);
        file.set_len(0).at(&path)?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        writeln!(file, "{me}").at(&path)?;
        file.sync_all().at(&path)?;
        if let Some(old) = took_over_from {
            tracing::warn!(stale_pid = old, lock = %path.display(), "took over a stale lock left by a process that is no longer running");
        }
        Ok(InstanceLock {
            _file: file,
            path,
            took_over_from,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    /// A clean exit clears the PID, so only a lock left by a killed process reads as stale.
    fn drop(&mut self) {
        let _ = self._file.set_len(0);
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// The PID recorded in the lock file if a live process holds the lock, without taking it.
pub fn holder(data_dir: &Path) -> Option<u32> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(read_pid(&mut file).unwrap_or(0)),
        Err(TryLockError::Error(_)) => None,
    }
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let lock = InstanceLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.took_over_from, None);
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        match InstanceLock::acquire(dir.path()) {
            Err(Error::AlreadyRunning { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert_eq!(holder(dir.path()), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(dir.path()), None);
        let again = InstanceLock::acquire(dir.path()).unwrap();
        assert_eq!(
            again.took_over_from, None,
            "a clean exit leaves no stale pid"
        );
    }

    #[test]
    fn stale_pid_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK_FILE), "4000000\n").unwrap();
        let lock = InstanceLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.took_over_from, Some(4_000_000));
    }
}

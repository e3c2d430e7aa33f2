//! The data directory: its lock and the names of the files in it.
//!
//! ```text
//! LOCK                        held (flock) by the one process using the directory
//! wal-0000000007.log          log segments, replayed in number order
//! snapshot-0000000007.snap    live state; covers every segment numbered below 7
//! *.tmp                       a snapshot being written (ignored and removed at start)
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Holds the directory's lock for as long as it lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Creates the directory if needed and locks it; a second process gets an error
    /// naming the holder's pid.
    pub fn acquire(dir: &Path) -> Result<DirLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(format!(
                "data directory {} is in use by another hopper process{who}; stop it or choose another --data-dir",
                dir.display()
            ));
        }
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(DirLock { _file: file })
    }
}

/// The numbered files of a data directory.
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<(u32, PathBuf)>,
    pub snapshots: Vec<(u32, PathBuf)>,
    pub temporaries: Vec<PathBuf>,
}

fn number(name: &str, prefix: &str, suffix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

pub fn snapshot_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("snapshot-{number:010}.snap"))
}

pub fn list(dir: &Path) -> io::Result<Listing> {
    let mut out = Listing::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".tmp") {
            out.temporaries.push(path.clone());
        } else if let Some(n) = number(name, "wal-", ".log") {
            out.segments.push((n, path.clone()));
        } else if let Some(n) = number(name, "snapshot-", ".snap") {
            out.snapshots.push((n, path.clone()));
        }
    }
    out.segments.sort();
    out.snapshots.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("hopper-lock-{}", std::process::id()));
        let first = DirLock::acquire(&dir).unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(err.contains("in use by another hopper process"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        DirLock::acquire(&dir).unwrap();
        std::fs::write(dir.join("wal-0000000002.log"), b"").unwrap();
        std::fs::write(dir.join("snapshot-0000000002.snap.tmp"), b"").unwrap();
        let l = list(&dir).unwrap();
        assert_eq!(l.segments.len(), 1);
        assert_eq!(l.segments[0].0, 2);
        assert_eq!(l.temporaries.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

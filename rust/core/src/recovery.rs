//! Start-up: load the newest snapshot, replay the log segments after it, and decide what
//! to do with damage.
//!
//! - A torn tail (the last segment ends inside a record, or its last records fail their
//!   checksum and no valid record follows) is what a crash mid-write leaves: it is cut
//!   off, with a warning naming the bytes dropped.
//! - Damage with valid records after it, in a snapshot, or in an earlier segment is not
//!   a crash artefact: start-up stops with a message, unless `repair` is set, in which
//!   case damaged records are skipped (and counted) and everything else is kept.

use std::fs::OpenOptions;
use std::path::Path;

use crate::data_dir::{list, Listing};
use crate::engine::{Engine, RestoreStats};
use crate::frame::{
    parse_header, read_frame, valid_frame_after, FrameError, HEADER_LEN, SEGMENT_MAGIC,
    SNAPSHOT_MAGIC,
};
use crate::record::{Decoder, Record};

/// What recovery found and did.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: Option<u32>,
    pub segments: usize,
    pub frames: u64,
    pub stats: RestoreStats,
    /// Bytes skipped as damaged under `repair` (0 otherwise).
    pub repaired_bytes: u64,
    pub warnings: Vec<String>,
    /// The number the next log segment gets.
    pub next_segment: u32,
    /// Log bytes not covered by the snapshot (decides when the next one is due).
    pub log_bytes: u64,
}

/// How one file ended.
enum Damage {
    /// At this offset, with a valid frame later at the second offset (or none).
    At(usize, Option<usize>, &'static str),
}

/// Applies the frames of `buf` from `pos`; stops at the first damage, if any.
fn apply_frames(
    buf: &[u8],
    mut pos: usize,
    engine: &mut Engine,
    out: &mut Recovered,
    mut on_record: impl FnMut(&Record<'_>),
) -> Option<Damage> {
    let mut records = Vec::new();
    loop {
        match read_frame(buf, pos) {
            Ok(None) => return None,
            Ok(Some((payload, next))) => {
                records.clear();
                let mut d = Decoder::new(payload);
                let decoded = loop {
                    match d.next_record() {
                        Ok(Some(r)) => records.push(r),
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e.0),
                    }
                };
                if let Err(what) = decoded {
                    return Some(Damage::At(pos, Some(next), what));
                }
                for r in records.drain(..) {
                    on_record(&r);
                    engine.apply(r, &mut out.stats);
                }
                out.frames += 1;
                pos = next;
            }
            Err(e) => {
                let what = match e {
                    FrameError::Short => "the data ends inside a record",
                    FrameError::Damaged => "a record fails its checksum",
                };
                return Some(Damage::At(pos, valid_frame_after(buf, pos), what));
            }
        }
    }
}

fn repair_hint(file: &str, at: usize, len: usize, what: &str) -> String {
    format!(
        "{file} is damaged at byte {at} of {len} ({what}), and valid records follow, so this is not an interrupted write. \
         hopper will not start on a damaged log: restore the data directory from a backup, or start once with --repair \
         to drop the damaged records and keep everything else"
    )
}

/// Replays one file's frames, handling damage as the module describes. `tail_ok`: this
/// is the last segment, where a torn tail is expected after a crash.
fn replay_file(
    path: &Path,
    buf: &[u8],
    engine: &mut Engine,
    repair: bool,
    tail_ok: bool,
    out: &mut Recovered,
    mut on_record: impl FnMut(&Record<'_>),
) -> Result<(), String> {
    let file = path.display().to_string();
    let mut pos = HEADER_LEN;
    loop {
        let Some(Damage::At(at, next, what)) = apply_frames(buf, pos, engine, out, &mut on_record)
        else {
            return Ok(());
        };
        match next {
            None if tail_ok => {
                let dropped = buf.len() - at;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(at as u64).and_then(|_| f.sync_all()));
                f.map_err(|e| format!("cannot truncate the torn end of {file}: {e}"))?;
                out.warnings.push(format!(
                    "{file}: dropped {dropped} bytes at the end ({what}: an interrupted write, nothing acknowledged as synced)"
                ));
                return Ok(());
            }
            _ if repair => {
                let resume = next.unwrap_or(buf.len());
                out.repaired_bytes += (resume - at) as u64;
                out.warnings.push(format!(
                    "--repair: {file}: skipped {} damaged bytes at byte {at} ({what})",
                    resume - at
                ));
                pos = resume;
            }
            _ => return Err(repair_hint(&file, at, buf.len(), what)),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Loads the newest snapshot. Returns its number.
fn load_snapshot(
    listing: &Listing,
    engine: &mut Engine,
    repair: bool,
    out: &mut Recovered,
) -> Result<Option<u32>, String> {
    let Some((number, path)) = listing.snapshots.last() else {
        return Ok(None);
    };
    let buf = read(path)?;
    let file = path.display().to_string();
    if parse_header(&buf, SNAPSHOT_MAGIC) != Some(*number) {
        if !repair {
            return Err(repair_hint(&file, 0, buf.len(), "bad header"));
        }
        out.warnings
            .push(format!("--repair: {file}: bad header; snapshot ignored"));
        return Ok(None);
    }
    let mut end = None;
    let mut jobs = 0u64;
    replay_file(path, &buf, engine, repair, false, out, |r| match r {
        Record::SnapshotEnd { jobs } => end = Some(*jobs),
        Record::Job(_) => jobs += 1,
        _ => {}
    })?;
    if end != Some(jobs) {
        let what = format!("incomplete: {jobs} jobs read, the end record says {end:?}");
        if !repair {
            return Err(format!(
                "{file} is {what}; start once with --repair to keep what it holds"
            ));
        }
        out.warnings.push(format!("--repair: {file} is {what}"));
    }
    Ok(Some(*number))
}

/// Rebuilds `engine` (a fresh one, not recording) from the data directory.
pub fn recover(dir: &Path, engine: &mut Engine, repair: bool) -> Result<Recovered, String> {
    let listing = list(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Recovered::default();
    for tmp in &listing.temporaries {
        let _ = std::fs::remove_file(tmp);
        out.warnings.push(format!(
            "removed {}: a snapshot that was never finished (the log still holds its data)",
            tmp.display()
        ));
    }
    let snapshot = load_snapshot(&listing, engine, repair, &mut out)?;
    out.snapshot = snapshot;
    let first = snapshot.unwrap_or(0);
    let segments: Vec<&(u32, std::path::PathBuf)> = listing
        .segments
        .iter()
        .filter(|(n, _)| *n >= first)
        .collect();
    // Older files are left over from a cleanup a crash interrupted.
    for (n, path) in listing.segments.iter().filter(|(n, _)| *n < first) {
        let _ = std::fs::remove_file(path);
        out.warnings.push(format!(
            "removed wal-{n:010}.log: already covered by the snapshot"
        ));
    }
    for (_, path) in listing.snapshots.iter().rev().skip(1) {
        let _ = std::fs::remove_file(path);
    }
    let mut expected = snapshot.or_else(|| segments.first().map(|s| s.0));
    for (i, (number, path)) in segments.iter().enumerate() {
        if expected.is_some_and(|e| e != *number) {
            let msg = format!(
                "log segment wal-{:010}.log is missing (found wal-{number:010}.log next)",
                expected.unwrap_or(0)
            );
            if !repair {
                return Err(format!(
                    "{msg}; start once with --repair to continue without it"
                ));
            }
            out.warnings.push(format!("--repair: {msg}"));
        }
        expected = Some(number + 1);
        let buf = read(path)?;
        let last = i + 1 == segments.len();
        if parse_header(&buf, SEGMENT_MAGIC) != Some(*number) {
            // A crash right after creating the file leaves it without a whole header.
            if last && buf.len() < HEADER_LEN {
                let _ = std::fs::remove_file(path);
                out.warnings.push(format!(
                    "{}: removed a segment created just before a crash",
                    path.display()
                ));
                continue;
            }
            let file = path.display().to_string();
            if !repair {
                return Err(repair_hint(&file, 0, buf.len(), "bad header"));
            }
            out.warnings
                .push(format!("--repair: {file}: bad header; segment skipped"));
            continue;
        }
        replay_file(path, &buf, engine, repair, last, &mut out, |_| {})?;
        out.log_bytes += buf.len() as u64;
        out.segments += 1;
    }
    let highest = listing.segments.iter().map(|s| s.0).chain(snapshot).max();
    out.next_segment = highest.map_or(1, |h| h + 1);
    Ok(out)
}

//! Start-up: load the newest snapshot, replay the log segments after it, and decide what
//! to do with damage.
//!
//! - A torn tail (the last segment ends inside a record, or its last records fail their
//!   checksum and no valid record follows) is what a crash mid-write leaves: it is cut
//!   off, with a warning naming the bytes dropped.
//! - Damage with valid records after it, in a snapshot, or in an earlier segment is not
//!   a crash artefact: start-up stops with a message, unless `repair` is set, in which
//!   case damaged records are skipped (and counted) and everything else is kept.

use crate::engine::{Engine, RestoreStats};
use crate::frame::{
    parse_header, read_frame, valid_frame_after, FrameError, HEADER_LEN, SEGMENT_MAGIC,
    SNAPSHOT_MAGIC,
};
use crate::log_store::{LogStore, StoreListing};
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

/// Where the bytes `replay_file` replays come from.
enum Source {
    Segment(u32),
    Snapshot(u32),
}

/// Replays one file's frames, handling damage as the module describes. `tail_ok`: this
/// is the last segment, where a torn tail is expected after a crash.
#[allow(clippy::too_many_arguments)]
fn replay_file(
    store: &dyn LogStore,
    source: Source,
    buf: &[u8],
    engine: &mut Engine,
    repair: bool,
    tail_ok: bool,
    out: &mut Recovered,
    mut on_record: impl FnMut(&Record<'_>),
) -> Result<(), String> {
    let file = match source {
        Source::Segment(n) => store.segment_name(n),
        Source::Snapshot(n) => store.snapshot_name(n),
    };
    let mut pos = HEADER_LEN;
    loop {
        let Some(Damage::At(at, next, what)) = apply_frames(buf, pos, engine, out, &mut on_record)
        else {
            return Ok(());
        };
        match next {
            None if tail_ok => {
                let dropped = buf.len() - at;
                let Source::Segment(n) = source else {
                    return Err(repair_hint(&file, at, buf.len(), what));
                };
                store
                    .truncate_segment(n, at as u64)
                    .map_err(|e| format!("cannot truncate the torn end of {file}: {e}"))?;
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

fn read(name: String, bytes: std::io::Result<Vec<u8>>) -> Result<Vec<u8>, String> {
    bytes.map_err(|e| format!("cannot read {name}: {e}"))
}

/// Loads the newest snapshot. Returns its number.
fn load_snapshot(
    store: &dyn LogStore,
    listing: &StoreListing,
    engine: &mut Engine,
    repair: bool,
    out: &mut Recovered,
) -> Result<Option<u32>, String> {
    let Some(number) = listing.snapshots.last() else {
        return Ok(None);
    };
    let file = store.snapshot_name(*number);
    let buf = read(file.clone(), store.read_snapshot(*number))?;
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
    let source = Source::Snapshot(*number);
    replay_file(
        store,
        source,
        &buf,
        engine,
        repair,
        false,
        out,
        |r| match r {
            Record::SnapshotEnd { jobs } => end = Some(*jobs),
            Record::Job(_) => jobs += 1,
            _ => {}
        },
    )?;
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

/// Rebuilds `engine` (a fresh one, not recording) from the store.
pub fn recover(
    store: &dyn LogStore,
    engine: &mut Engine,
    repair: bool,
) -> Result<Recovered, String> {
    let cannot_list = |e: std::io::Error| format!("cannot list {}: {e}", store.describe());
    let listing = store.list().map_err(cannot_list)?;
    let mut out = Recovered::default();
    let unfinished = store.remove_unfinished().map_err(cannot_list)?;
    for name in unfinished {
        out.warnings.push(format!(
            "removed {name}: a snapshot that was never finished (the log still holds its data)"
        ));
    }
    let snapshot = load_snapshot(store, &listing, engine, repair, &mut out)?;
    out.snapshot = snapshot;
    let first = snapshot.unwrap_or(0);
    let segments: Vec<u32> = listing
        .segments
        .iter()
        .copied()
        .filter(|n| *n >= first)
        .collect();
    // Older ones are left over from a cleanup a crash interrupted.
    for n in listing.segments.iter().filter(|n| **n < first) {
        let _ = store.remove_segment(*n);
        out.warnings.push(format!(
            "removed {}: already covered by the snapshot",
            store.segment_name(*n)
        ));
    }
    for n in listing.snapshots.iter().rev().skip(1) {
        let _ = store.remove_snapshot(*n);
    }
    let mut expected = snapshot.or_else(|| segments.first().copied());
    for (i, number) in segments.iter().copied().enumerate() {
        let name = store.segment_name(number);
        if let Some(e) = expected.filter(|e| *e != number) {
            let msg = format!(
                "log segment {} is missing (found {name} next)",
                store.segment_name(e)
            );
            if !repair {
                return Err(format!(
                    "{msg}; start once with --repair to continue without it"
                ));
            }
            out.warnings.push(format!("--repair: {msg}"));
        }
        expected = Some(number + 1);
        let buf = read(name.clone(), store.read_segment(number))?;
        let last = i + 1 == segments.len();
        if parse_header(&buf, SEGMENT_MAGIC) != Some(number) {
            // A crash right after creating the file leaves it without a whole header.
            if last && buf.len() < HEADER_LEN {
                let _ = store.remove_segment(number);
                out.warnings.push(format!(
                    "{name}: removed a segment created just before a crash"
                ));
                continue;
            }
            if !repair {
                return Err(repair_hint(&name, 0, buf.len(), "bad header"));
            }
            out.warnings
                .push(format!("--repair: {name}: bad header; segment skipped"));
            continue;
        }
        let source = Source::Segment(number);
        replay_file(store, source, &buf, engine, repair, last, &mut out, |_| {})?;
        out.log_bytes += buf.len() as u64;
        out.segments += 1;
    }
    let highest = listing.segments.iter().copied().chain(snapshot).max();
    out.next_segment = highest.map_or(1, |h| h + 1);
    Ok(out)
}

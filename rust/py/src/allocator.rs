//! The extension's memory allocator, and what `/health` and `/gc` need to see of it.
//!
//! The engine allocates and frees many small values per frame (decoded MessagePack
//! strings, options, ids). glibc's malloc spent ~40% of a bulk push's server CPU on them
//! (perf on `bench/tcp.py`'s addbulk cell); mimalloc's thread-local free lists do not.
//! Memory the engine holds is then mimalloc's, which glibc's `mallinfo2` cannot see.
//! mimalloc asks for transparent huge pages on its arenas; the kernel zeroing 2 MiB
//! pages then took a third of that same profile, so the process opts out of them
//! (`no_huge_pages`). mimalloc 2 avoids them too but counts its whole 1 GiB arena as
//! committed, which would make `/health`'s heap figures meaningless.

use pyo3::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opts the process out of transparent huge pages (Linux; a no-op elsewhere). The
/// kernel checks the flag when a page is first touched, so mappings made before this
/// call are covered too. Only regions that ask for huge pages (mimalloc's) are affected
/// when the system's THP mode is `madvise`, its usual default.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a process flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// (current, peak) bytes mimalloc has committed for the engine.
#[pyfunction]
pub fn allocator_committed() -> (usize, usize) {
    let (mut elapsed, mut user, mut system) = (0usize, 0usize, 0usize);
    let (mut rss, mut peak_rss, mut faults) = (0usize, 0usize, 0usize);
    let (mut commit, mut peak_commit) = (0usize, 0usize);
    // SAFETY: every pointer is to a live local; mimalloc only writes through them.
    unsafe {
        libmimalloc_sys::mi_process_info(
            &mut elapsed,
            &mut user,
            &mut system,
            &mut rss,
            &mut peak_rss,
            &mut commit,
            &mut peak_commit,
            &mut faults,
        );
    }
    (commit, peak_commit)
}

/// Returns the engine's freed memory to the OS (the `/gc` route's `malloc_trim`).
#[pyfunction]
pub fn allocator_release(py: Python<'_>) {
    // SAFETY: mi_collect has no preconditions; it may take a while, so no GIL is held.
    py.allow_threads(|| unsafe { libmimalloc_sys::mi_collect(true) });
}

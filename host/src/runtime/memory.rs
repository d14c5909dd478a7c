//! The host's dealings with glibc's allocator, whose defaults suit a few threads, not the up
//! to a thousand loop threads (`--max-plugin-threads`) that plugin code that blocks can call up.

/// Each of up to a thousand threads would get a malloc arena of its own (up to 8 per core),
/// each keeping its freed memory: RSS then depends on which threads ran what. A few arenas, one
/// per core, keep it steady at the cost of a little lock sharing.
pub(crate) fn bound_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes a malloc tunable; M_ARENA_MAX affects arenas made later.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Returns the memory a burst's threads freed to the system, as the burst's threads exit:
/// glibc keeps it otherwise, and the host's RSS would stay at the burst's peak.
pub(crate) fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes the host has allocated and not freed (every arena, and mmapped blocks): unlike RSS,
/// it does not depend on how freed memory is kept, so it shows a leak exactly.
pub(crate) fn allocated_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions; it reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

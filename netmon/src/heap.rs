//! The agent's heap: one arena, and freed memory handed back to the kernel.

/// glibc gives each thread that allocates an arena of its own, and each keeps what was freed
/// in it. The agent allocates little and seldom at once: one arena shared by its few threads
/// costs no waiting worth measuring and keeps the others' pages from being touched at all.
/// Call before any thread starts.
pub fn use_one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's settings.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// glibc keeps what its arenas freed for later reuse, and it shows as resident memory long
/// after: the parses of the kernel's BTF at start, a busy poll's socket table, a rendered
/// exposition. The agent's live heap is small, so this gives the free pages back after each
/// poll, in well under a millisecond.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns memory that no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

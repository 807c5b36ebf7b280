//! Handing freed heap memory back to the kernel.

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

//! The agent's memory: one heap arena, freed memory handed back to the kernel, and the pages
//! of code that only start-up ran let go.

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

/// Start-up runs code that no poll or request runs again: parsing the arguments and the
/// configuration, parsing the kernel's BTF, loading and attaching the programs. Its pages, and
/// those of the constant data it read, stay mapped and count as the agent's resident memory
/// for as long as it runs. This unmaps them once, after the first poll: what the agent uses
/// from then on is mapped again from the page cache at its first use (a minor fault). Only
/// read-only mappings of files that hold no page of their own are touched: every page of
/// theirs is the file's, and reading it again gives the same bytes. (A mapping the dynamic
/// linker relocated, or a uprobe patched, has pages of its own, and is left alone.)
pub fn release_start_up_code() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in file_pages_only(&smaps) {
        // SAFETY: see above: the range's pages are all copies of the file's, so dropping
        // them only makes the next access read them again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The address ranges of `/proc/self/smaps` whose mappings are of a file, not writable, and
/// hold no anonymous page.
fn file_pages_only(smaps: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut current = None;
    for line in smaps.lines() {
        if let Some(range) = mapping_header(line) {
            current = range;
        } else if let Some(anonymous) = line.strip_prefix("Anonymous:")
            && let Some(range) = current.take()
            && anonymous.trim() == "0 kB"
        {
            ranges.push(range);
        }
    }
    ranges
}

/// For the header line of a mapping (`start-end perms offset dev inode path`): `Some` of its
/// range when it maps a file read-only, `Some(None)` for any other mapping, `None` for a line
/// that is not a header.
fn mapping_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    // Offset, device and inode, then the path: a file's, not `[vdso]` or an anonymous one.
    let path = fields.nth(3).unwrap_or("");
    let read_only_file = perms.len() == 4 && !perms.contains('w') && path.starts_with('/');
    Some(read_only_file.then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::file_pages_only;

    #[test]
    fn only_read_only_file_mappings_without_pages_of_their_own_are_let_go() {
        let smaps = "\
55d0c0400000-55d0c0a00000 r--p 00000000 fd:01 1234 /usr/bin/netmon
Rss:                1488 kB
Anonymous:             0 kB
55d0c0a00000-55d0c1200000 r-xp 00600000 fd:01 1234 /usr/bin/netmon
Rss:                3980 kB
Anonymous:             0 kB
55d0c1200000-55d0c1300000 r--p 01000000 fd:01 1234 /usr/bin/netmon
Rss:                 140 kB
Anonymous:           140 kB
55d0c1300000-55d0c1310000 rw-p 01100000 fd:01 1234 /usr/bin/netmon
Anonymous:             0 kB
55d0c2000000-55d0c2200000 rw-p 00000000 00:00 0 [heap]
Anonymous:          1476 kB
7f0000000000-7f0000021000 r-xp 00000000 00:00 0
Anonymous:             0 kB
7ffd1a3f0000-7ffd1a3f2000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            file_pages_only(smaps),
            [
                (0x55d0_c040_0000, 0x55d0_c0a0_0000),
                (0x55d0_c0a0_0000, 0x55d0_c120_0000)
            ]
        );
    }
}

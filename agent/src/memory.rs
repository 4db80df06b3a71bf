//! The daemon's resident size. glibc gives each thread that allocates an
//! arena of its own and keeps what is freed there; after an apply at
//! 50,000 networks the arenas of a few tokio threads held four times the
//! live heap. One arena, trimmed after the big moments, keeps the resident
//! size near what is in use (docs/benchmarks.md, "The third run").

/// Use one malloc arena for every thread. Call before any thread starts;
/// bulwarkd's threads allocate rarely, so they do not contend for it.
pub fn one_arena() {
    #[allow(unsafe_code)]
    // SAFETY: mallopt sets an allocator parameter; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Give the allocator's free memory back to the system: reading back a big
/// table allocates tens of megabytes for moments, which glibc would
/// otherwise keep as the daemon's resident size.
pub fn trim() {
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free heap pages; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! Which cores the process may run on (its affinity mask, so `taskset`
//! is respected): worker `i` is pinned to the `i`-th allowed core.

/// The CPUs in this process's affinity mask, ascending.
pub fn allowed() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set. The call
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_least_one_cpu_is_allowed() {
        assert!(!super::allowed().is_empty());
    }
}

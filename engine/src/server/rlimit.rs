//! Open-file limit: a gateway holds two sockets per proxied stream, so the
//! usual soft limit (1024) would cap it near 500 streams. At start-up the
//! soft limit is raised to the hard limit (to 1 Mi when privileged), as
//! nginx's `worker_rlimit_nofile` would.

/// Raises `RLIMIT_NOFILE`; returns the soft limit now in force.
#[allow(unsafe_code)]
pub fn raise_nofile() -> u64 {
    const WANT: libc::rlim_t = 1 << 20;
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_max < WANT {
            let more = libc::rlimit {
                rlim_cur: WANT,
                rlim_max: WANT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &more) == 0 {
                return WANT;
            }
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        r.rlim_cur
    }
}

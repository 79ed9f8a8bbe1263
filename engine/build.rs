//! Names the commit the binary was built from, for `ringway --version`:
//! `RINGWAY_COMMIT` from the environment when set (a container build, whose
//! context has no `.git`: `deploy/Dockerfile` takes it as a build argument),
//! else `git rev-parse`, else `unknown` (e.g. from a source tarball).

fn main() {
    println!("cargo:rerun-if-env-changed=RINGWAY_COMMIT");
    let commit = std::env::var("RINGWAY_COMMIT")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RINGWAY_COMMIT={commit}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}

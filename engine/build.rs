//! Names the commit the binary was built from, for `ringway --version`:
//! `RINGWAY_COMMIT` from the environment when set (a container build, whose
//! context has no `.git`: `deploy/Dockerfile` takes it as a build argument),
//! else `git rev-parse`, else `unknown` (e.g. from a source tarball).
//!
//! Reruns when HEAD or its branch moves. The paths come from git itself, so
//! a linked worktree (whose `.git` is a file) watches its own HEAD instead
//! of a path that does not exist, which would rebuild on every build.

fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RINGWAY_COMMIT");
    if let Some(commit) = std::env::var("RINGWAY_COMMIT")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
    {
        println!("cargo:rustc-env=RINGWAY_COMMIT={commit}");
        return;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RINGWAY_COMMIT={commit}");
    // HEAD, and the branch it names (its own file, or packed-refs), not
    // every branch: commits on other branches (other worktrees) change
    // nothing here.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut watched = false;
    for what in ["HEAD", branch.as_deref().unwrap_or("HEAD"), "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", what]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
                watched = true;
            }
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        println!("cargo:rerun-if-changed=../.git/refs/heads");
    }
}

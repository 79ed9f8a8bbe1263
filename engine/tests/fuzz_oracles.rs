//! The fuzz oracles (`fuzz/src/lib.rs`) on stable, in CI: every parser of
//! outside bytes is fed its seeds (`fuzz/seeds/<target>/`), every input
//! that once made an oracle fail (`fuzz/regressions/<target>/`), and
//! deterministic mutations of them — byte flips, insertions of the tokens
//! these grammars turn on, deletions, duplications, truncations and
//! splices of two inputs. Not coverage-guided like `cargo fuzz` (nightly,
//! docs/fuzzing.md), but the same properties checked on every change.
//! A failure names the target and writes the input where it can be added
//! to the regressions.
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/src/lib.rs"]
mod oracles;

use std::path::{Path, PathBuf};

/// Mutated inputs per target.
const MUTATIONS: usize = 3_000;

/// Tokens the parsers under test branch on.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"data: ",
    b"event: ",
    b": ",
    b"0\r\n\r\n",
    b"ffffffff\r\n",
    b"1e999",
    b"-0.5E+3",
    b"null",
    b"true",
    b"\xc3\xa9",
    b"\xff",
    b"\x00",
    b"\"content\":",
    b"\"delta\":",
    b"\"choices\":[",
    b"\"usage\":{",
    b"[DONE]",
    b"*2\r\n",
    b"$-1\r\n",
    b":1\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 9\r\n",
    b"HTTP/1.1 ",
    // Configuration (YAML and JSON), cost_expr, header values.
    b"${AB}",
    b"${A}",
    b"\n  ",
    b"\n- ",
    b": ",
    b"&a ",
    b"*a",
    b"1e20",
    b"9223372036854775807",
    b"-1",
    b"0",
    b"\"plugins\":{",
    b"\"ai-proxy-multi\":{\"instances\":[",
    b"\"nodes\":",
    b"\"timeout\":",
    b"(",
    b")",
    b"^",
    b"max(",
    b"%",
    b"%2",
    b" GMT",
];

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = inputs[rng.below(inputs.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            // The first byte: the split step of the targets that take one.
            7 if !v.is_empty() => v[0] = rng.next() as u8,
            1 => v.insert(at, rng.next() as u8),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(end..end, piece);
            }
            5 => v.truncate(at),
            6 => {
                let other = &inputs[rng.below(inputs.len())];
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Runs `oracle` on `input`; on a failure, saves the input and fails
/// naming the target.
fn check(target: &str, oracle: oracles::Oracle, input: &[u8]) {
    if std::panic::catch_unwind(|| oracle(input)).is_err() {
        let out = std::env::temp_dir().join(format!("ringway-fuzz-{target}-failure"));
        std::fs::write(&out, input).unwrap();
        panic!(
            "fuzz oracle `{target}` failed on {:?} (saved to {}; add it under fuzz/regressions/{target}/)",
            String::from_utf8_lossy(input),
            out.display()
        );
    }
}

fn run(target: &str) {
    let (_, oracle) = oracles::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut inputs = seeds;
    inputs.extend(regressions);
    inputs.push(Vec::new());
    for input in &inputs {
        check(target, *oracle, input);
    }
    // Seeded by the target's name: each target its own fixed sequence.
    let mut rng = Rng(target.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    for _ in 0..MUTATIONS {
        let input = mutate(&mut rng, &inputs);
        check(target, *oracle, &input);
    }
}

#[test]
fn every_fuzz_target_has_a_test_here() {
    let here = include_str!("fuzz_oracles.rs");
    for (name, _) in oracles::TARGETS {
        assert!(here.contains(&format!("fn {name}()")), "no test for {name}");
    }
    let bins = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .count();
    assert_eq!(
        bins,
        oracles::TARGETS.len(),
        "fuzz_targets/ and TARGETS differ"
    );
}

#[test]
fn request_head() {
    run("request_head");
}

#[test]
fn response_head() {
    run("response_head");
}

#[test]
fn chunked_body() {
    run("chunked_body");
}

#[test]
fn sse_stream() {
    run("sse_stream");
}

#[test]
fn client_body() {
    run("client_body");
}

#[test]
fn json_scan() {
    run("json_scan");
}

#[test]
fn redis_reply() {
    run("redis_reply");
}

#[test]
fn condition() {
    run("condition");
}

#[test]
fn config_file() {
    run("config_file");
}

#[test]
fn admin_resource() {
    run("admin_resource");
}

#[test]
fn standalone_document() {
    run("standalone_document");
}

#[test]
fn cost_expr() {
    run("cost_expr");
}

#[test]
fn retry_after() {
    run("retry_after");
}

#[test]
fn key_auth_decode() {
    run("key_auth_decode");
}

#[test]
fn provider_answer() {
    run("provider_answer");
}

#[test]
fn gcp_token() {
    run("gcp_token");
}

//! Random ids for requests and traces, made on the worker that needs them:
//! a per-thread generator (wyrand: one multiply and an xor per 64 bits)
//! seeded once from the operating system's random source, so making an id
//! takes no lock, no system call and no allocation. The ids are unique,
//! not secret: nothing here is fit for keys or tokens.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A seed from the system's random source; should that fail, the clock
/// and the thread's stack address (distinct per thread) stand in.
fn seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let here = &b as *const _ as u64;
    t ^ here.rotate_left(32)
}

/// The next 64 random bits of this thread's generator.
#[inline]
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let m = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (m as u64) ^ ((m >> 64) as u64)
    })
}

/// `N` random bytes, never all zero (W3C trace context forbids zero ids).
#[inline]
pub fn nonzero<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    loop {
        for chunk in out.chunks_mut(8) {
            let r = next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if out.iter().any(|&b| b != 0) {
            return out;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex.
#[inline]
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Reads exactly `2 * N` hex digits (either case) into `N` bytes.
pub fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(s[2 * i])? << 4) | digit(s[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_are_never_zero() {
        let a: [u8; 16] = nonzero();
        let b: [u8; 16] = nonzero();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        // Another thread has a generator of its own, seeded apart.
        let c = std::thread::spawn(nonzero::<16>).join().unwrap();
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn the_generator_spreads_its_bits() {
        // Every bit position is set in roughly half of 4096 draws.
        let mut ones = [0u32; 64];
        for _ in 0..4096 {
            let x = next_u64();
            for (i, o) in ones.iter_mut().enumerate() {
                *o += ((x >> i) & 1) as u32;
            }
        }
        assert!(ones.iter().all(|&n| (1700..2400).contains(&n)), "{ones:?}");
    }

    #[test]
    fn hex_both_ways() {
        assert_eq!(hex(&[0x0a, 0xf0, 0x00]), "0af000");
        assert_eq!(parse_hex::<2>(b"0AfF"), Some([0x0a, 0xff]));
        assert_eq!(parse_hex::<2>(b"0af"), None);
        assert_eq!(parse_hex::<2>(b"0afg"), None);
    }
}

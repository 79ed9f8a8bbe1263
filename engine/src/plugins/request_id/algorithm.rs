//! The ids `request-id` makes, each from the worker's generator
//! ([`crate::exchange::ids`]):
//!
//! | `algorithm` | form |
//! |---|---|
//! | `uuid` (default) | RFC 9562 version 4, lowercase: `8-4-4-4-12` hex digits |
//! | `nanoid` | 21 characters of `A-Za-z0-9_-` (nanoid's URL-safe alphabet) |
//! | `range_id` | `range_id.length` (default 16, at least 6) characters drawn from `range_id.char_set` (APISIX's default, its `HIGK` typo included) |
//! | `ksuid` | 27 base62 characters: a 32-bit timestamp (seconds since 2014-05-13) and 128 random bits |

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{from_value, ConfigError, FieldPath};
use crate::exchange::ids::next_u64;

/// APISIX's default `range_id.char_set`, exactly.
pub const DEFAULT_CHAR_SET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789";
/// The longest `range_id` ringway makes (APISIX sets no bound; a header
/// line must fit a head).
pub const MAX_RANGE_LENGTH: i64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    Uuid,
    Nanoid,
    RangeId { char_set: Box<[u8]>, length: usize },
    Ksuid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFile {
    #[serde(default = "sixteen")]
    length: i64,
    #[serde(default = "default_char_set")]
    char_set: String,
}

fn sixteen() -> i64 {
    16
}
fn default_char_set() -> String {
    DEFAULT_CHAR_SET.into()
}

impl Algorithm {
    /// `name` and the `range_id` object (read for `range_id` only, as
    /// APISIX does, but checked whenever given).
    pub fn compile(
        name: &str,
        range: Option<&Value>,
        at: &FieldPath,
    ) -> Result<Algorithm, ConfigError> {
        let at_range = at.field("range_id");
        let range: RangeFile = match range {
            Some(v) => from_value(v, &at_range)?,
            None => RangeFile {
                length: sixteen(),
                char_set: default_char_set(),
            },
        };
        if !(6..=MAX_RANGE_LENGTH).contains(&range.length) {
            return Err(at_range
                .field("length")
                .error(format!("must be between 6 and {MAX_RANGE_LENGTH}")));
        }
        if range.char_set.len() < 6 || !range.char_set.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(at_range
                .field("char_set")
                .error("must be at least 6 visible ASCII characters"));
        }
        Ok(match name {
            "uuid" => Algorithm::Uuid,
            "nanoid" => Algorithm::Nanoid,
            "ksuid" => Algorithm::Ksuid,
            "range_id" => Algorithm::RangeId {
                char_set: range.char_set.into_bytes().into_boxed_slice(),
                length: range.length as usize,
            },
            _ => {
                return Err(at
                    .field("algorithm")
                    .error("must be one of uuid, nanoid, range_id, ksuid"))
            }
        })
    }

    /// A new id.
    pub fn make(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len());
        match self {
            Algorithm::Uuid => uuid(&mut out),
            Algorithm::Nanoid => pick(&mut out, NANOID, 21),
            Algorithm::RangeId { char_set, length } => pick(&mut out, char_set, *length),
            Algorithm::Ksuid => ksuid(&mut out, unix_seconds()),
        }
        Bytes::from(out)
    }

    fn len(&self) -> usize {
        match self {
            Algorithm::Uuid => 36,
            Algorithm::Nanoid => 21,
            Algorithm::RangeId { length, .. } => *length,
            Algorithm::Ksuid => 27,
        }
    }
}

const NANOID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A version 4 UUID: 122 random bits, version and variant set.
fn uuid(out: &mut Vec<u8>) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&next_u64().to_le_bytes());
    b[8..].copy_from_slice(&next_u64().to_le_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    for (i, part) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        crate::exchange::ids::push_hex(out, part);
    }
}

/// `n` characters of `set`, each uniformly drawn (Lemire's multiply: a
/// bias below 2^-50 for any set that fits a header).
fn pick(out: &mut Vec<u8>, set: &[u8], n: usize) {
    let len = set.len() as u128;
    out.extend((0..n).map(|_| set[((u128::from(next_u64()) * len) >> 64) as usize]));
}

/// KSUID's epoch: 2014-05-13T16:53:20Z.
const KSUID_EPOCH: u64 = 1_400_000_000;

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A KSUID: the 160-bit number (timestamp, then payload) in base62,
/// 27 digits with leading zeros.
fn ksuid(out: &mut Vec<u8>, now: u64) {
    let ts = now.saturating_sub(KSUID_EPOCH) as u32;
    let (a, b) = (next_u64(), next_u64());
    let words = [ts, (a >> 32) as u32, a as u32, (b >> 32) as u32, b as u32];
    out.extend_from_slice(&base62(words));
}

/// A 160-bit number (big-endian words) as 27 base62 digits.
fn base62(mut words: [u32; 5]) -> [u8; 27] {
    let mut digits = [b'0'; 27];
    for d in digits.iter_mut().rev() {
        // Long division of the big-endian words by 62.
        let mut rem = 0u64;
        for w in words.iter_mut() {
            let cur = (rem << 32) | u64::from(*w);
            *w = (cur / 62) as u32;
            rem = cur % 62;
        }
        *d = BASE62[rem as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn made(name: &str, range: Option<Value>) -> String {
        let a = Algorithm::compile(name, range.as_ref(), &FieldPath::root()).unwrap();
        String::from_utf8(a.make().to_vec()).unwrap()
    }

    #[test]
    fn uuids_are_version_4() {
        let u = made("uuid", None);
        assert_eq!(u.len(), 36);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(u
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
        assert_ne!(made("uuid", None), u);
    }

    #[test]
    fn nanoids_and_range_ids_use_their_alphabets() {
        let n = made("nanoid", None);
        assert_eq!(n.len(), 21);
        assert!(n.bytes().all(|b| NANOID.contains(&b)));
        let r = made("range_id", None);
        assert_eq!(r.len(), 16);
        assert!(r.bytes().all(|b| DEFAULT_CHAR_SET.as_bytes().contains(&b)));
        let r = made(
            "range_id",
            Some(json!({"char_set": "abcdef", "length": 40})),
        );
        assert_eq!(r.len(), 40);
        assert!(r.bytes().all(|b| b"abcdef".contains(&b)));
        // Every character of the set turns up.
        let many: String = (0..50)
            .map(|_| made("range_id", Some(json!({"char_set": "abcdef"}))))
            .collect();
        assert!(b"abcdef".iter().all(|c| many.as_bytes().contains(c)));
    }

    #[test]
    fn ksuids_are_27_base62_digits_ordered_by_time() {
        let mut a = Vec::new();
        ksuid(&mut a, KSUID_EPOCH + 1000);
        let mut b = Vec::new();
        ksuid(&mut b, KSUID_EPOCH + 2000);
        assert_eq!(a.len(), 27);
        assert!(a.iter().all(|c| BASE62.contains(c)));
        assert!(a < b, "a later second sorts after");
        // The largest value KSUID allows, and the smallest.
        assert_eq!(&base62([u32::MAX; 5]), b"aWgEPTl1tmebfsQzFP4bxwgy80V");
        assert_eq!(&base62([0; 5]), b"000000000000000000000000000");
        assert_eq!(&base62([0, 0, 0, 0, 62]), b"000000000000000000000000010");
    }

    #[test]
    fn range_bounds() {
        for bad in [
            json!({"length": 5}),
            json!({"length": 1025}),
            json!({"char_set": "abc"}),
            json!({"char_set": "abcdefé"}),
            json!({"x": 1}),
        ] {
            assert!(
                Algorithm::compile("range_id", Some(&bad), &FieldPath::root()).is_err(),
                "{bad}"
            );
        }
    }
}

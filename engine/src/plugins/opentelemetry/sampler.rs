//! APISIX's samplers (`sampler.name`): `always_on`, `always_off` (the
//! default), `trace_id_ratio` (`options.fraction`, default 0) and
//! `parent_base` (the caller's `sampled` flag when a valid `traceparent`
//! came, else `options.root`: one of the other three, `always_off` by
//! default).
//!
//! `trace_id_ratio` decides by the trace id, so every gateway and service
//! that samples a trace by the same rule agrees on it: a trace is sampled
//! when the last 8 bytes of its id, read as a big-endian integer and
//! scaled to [0, 1), fall below the fraction (the high 53 bits are
//! compared, exactly, as doubles). Fraction 0 samples nothing, 1 all.

use serde::Deserialize;
use serde_json::Value;

use crate::config::{from_value, ConfigError, FieldPath};
use crate::exchange::trace::TraceParent;

#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBase(Box<Sampler>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    options: Option<OptionsFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    fraction: Option<f64>,
    root: Option<Value>,
}

impl Sampler {
    /// `sampler` (`None`: absent).
    pub fn compile(value: Option<&Value>, at: &FieldPath) -> Result<Sampler, ConfigError> {
        Sampler::compile_at(value, at, true)
    }

    fn compile_at(
        value: Option<&Value>,
        at: &FieldPath,
        top: bool,
    ) -> Result<Sampler, ConfigError> {
        let f: File = match value {
            Some(v) => from_value(v, at)?,
            None => File::default(),
        };
        let options = f.options.unwrap_or_default();
        let at_o = at.field("options");
        let fraction = options.fraction.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&fraction) {
            return Err(at_o.field("fraction").error("must be between 0 and 1"));
        }
        Ok(match f.name.as_deref().unwrap_or("always_off") {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "trace_id_ratio" => Sampler::Ratio(fraction),
            "parent_base" if top => {
                let root = Sampler::compile_at(options.root.as_ref(), &at_o.field("root"), false)?;
                Sampler::ParentBase(Box::new(root))
            }
            _ if top => {
                return Err(at
                    .field("name")
                    .error("must be one of always_on, always_off, trace_id_ratio, parent_base"))
            }
            _ => {
                return Err(at
                    .field("name")
                    .error("must be one of always_on, always_off, trace_id_ratio"))
            }
        })
    }

    /// Whether a trace of `trace_id` (continuing `parent`, if any) is
    /// sampled.
    #[inline]
    pub fn sample(&self, trace_id: &[u8; 16], parent: Option<&TraceParent>) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(f) => ratio(*f, trace_id),
            Sampler::ParentBase(root) => match parent {
                Some(p) => p.sampled(),
                None => root.sample(trace_id, None),
            },
        }
    }
}

/// Whether `trace_id` falls in the first `fraction` of the id space.
#[inline]
pub fn ratio(fraction: f64, trace_id: &[u8; 16]) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low) >> 11;
    fraction >= 1.0 || (x as f64) < fraction * (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(low: u64) -> [u8; 16] {
        let mut t = [7u8; 16];
        t[8..].copy_from_slice(&low.to_be_bytes());
        t
    }

    #[test]
    fn the_ratio_decides_by_the_trace_id() {
        assert!(ratio(0.5, &id(0)));
        assert!(ratio(0.5, &id((1 << 63) - 4096)));
        assert!(!ratio(0.5, &id(1 << 63)));
        assert!(!ratio(0.5, &id(u64::MAX)));
        assert!(ratio(1.0, &id(u64::MAX)));
        assert!(!ratio(0.0, &id(0)));
        // Over evenly spread ids, the share sampled is the fraction (the
        // 101st id sits just under the bound: `step` rounds down).
        let n = 10_000u64;
        let step = u64::MAX / n;
        let hit = (0..n).filter(|i| ratio(0.01, &id(i * step))).count();
        assert_eq!(hit, 101);
        let hit = (0..n)
            .filter(|i| ratio(0.01, &id(i * step + step / 2)))
            .count();
        assert_eq!(hit, 100);
    }

    #[test]
    fn parent_base_follows_the_caller_else_its_root() {
        let s = Sampler::compile(
            Some(&json!({"name": "parent_base", "options": {"root": {"name": "always_on"}}})),
            &FieldPath::root(),
        )
        .unwrap();
        let p = |flags| TraceParent {
            trace_id: id(0),
            span_id: [1; 8],
            flags,
        };
        assert!(s.sample(&id(0), Some(&p(1))));
        assert!(!s.sample(&id(0), Some(&p(0))));
        assert!(s.sample(&id(0), None));
        let off =
            Sampler::compile(Some(&json!({"name": "parent_base"})), &FieldPath::root()).unwrap();
        assert!(!off.sample(&id(0), None));
    }

    #[test]
    fn configs_default_and_refuse() {
        assert_eq!(
            Sampler::compile(None, &FieldPath::root()).unwrap(),
            Sampler::AlwaysOff
        );
        assert_eq!(
            Sampler::compile(
                Some(&json!({"name": "trace_id_ratio", "options": {"fraction": 0.25}})),
                &FieldPath::root()
            )
            .unwrap(),
            Sampler::Ratio(0.25)
        );
        for (bad, path) in [
            (json!({"name": "sometimes"}), "sampler.name"),
            (
                json!({"name": "trace_id_ratio", "options": {"fraction": 1.5}}),
                "options.fraction",
            ),
            (
                json!({"name": "parent_base", "options": {"root": {"name": "parent_base"}}}),
                "root.name",
            ),
            (json!({"nmae": "always_on"}), "nmae"),
        ] {
            let e = Sampler::compile(Some(&bad), &FieldPath::root().field("sampler"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(path), "{bad}: {e}");
        }
    }
}

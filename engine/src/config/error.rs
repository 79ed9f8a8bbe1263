//! The one error type of configuration: which file, which field, and why.

use std::fmt;

/// A configuration error naming the source, the field path
/// (`services[0].routes[1].plugins.ai-proxy-multi.instances[0].weight`) and
/// the reason. Used for the config file and Admin API bodies alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or Admin API resource) the error was found in.
    pub source: Option<String>,
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            source: None,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Attaches the file (or resource) name, unless one is already set.
    pub fn in_source(mut self, source: impl Into<String>) -> Self {
        if self.source.is_none() {
            self.source = Some(source.into());
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A field path under construction, e.g. `services[0].routes[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// A path recorded as a resource's origin (`services[0].routes[1]`;
    /// empty for Admin API resources, whose errors are relative).
    pub fn from_origin(origin: String) -> Self {
        FieldPath(origin)
    }

    /// `self.name` (an empty name is written `""`, so it still shows).
    pub fn field(&self, name: &str) -> FieldPath {
        let name = if name.is_empty() { EMPTY_KEY } else { name };
        if self.0.is_empty() {
            FieldPath(name.to_owned())
        } else {
            FieldPath(format!("{}.{}", self.0, name))
        }
    }

    /// `self[index]`
    pub fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{}]", self.0, index))
    }

    /// Joins a path reported by serde (relative to this one).
    pub fn join(&self, rel: &str) -> String {
        match (self.0.is_empty(), rel.is_empty() || rel == ".") {
            (_, true) => self.0.clone(),
            (true, false) => rel.to_owned(),
            (false, false) if rel.starts_with('[') => format!("{}{}", self.0, rel),
            (false, false) => format!("{}.{}", self.0, rel),
        }
    }

    /// An error at this path.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), reason)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a path shows an empty key.
const EMPTY_KEY: &str = "\"\"";

/// Deserialises `value` into `T`, reporting errors at `at` + the path serde
/// walked to the bad field.
pub fn from_value<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    at: &FieldPath,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let rel = relative(e.path());
        ConfigError::new(
            at.join(&rel),
            without_string_value(e.into_inner().to_string()),
        )
    })
}

/// serde's "invalid type / value" messages quote the string they got;
/// a key written in the wrong place must not reach a log (or an Admin
/// API answer) that way: the path says where, the value is left out.
fn without_string_value(msg: String) -> String {
    const QUOTED: &str = "string \"";
    for kind in ["invalid type: ", "invalid value: "] {
        let Some(rest) = msg.strip_prefix(kind) else {
            continue;
        };
        if let Some(end) = rest.rfind("\", expected") {
            if rest.starts_with(QUOTED) && end >= QUOTED.len() {
                return format!("{kind}a string{}", &rest[end + 1..]);
            }
        }
    }
    msg
}

/// serde's path as ours: `a.b[2].c`, an empty key as `""` (serde writes
/// nothing for it, which would leave an error with no place).
fn relative(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        let name = match seg {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Map { key } | Segment::Enum { variant: key } if key.is_empty() => EMPTY_KEY,
            Segment::Map { key } | Segment::Enum { variant: key } => key.as_str(),
            Segment::Unknown => "?",
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values_are_left_out_of_type_errors() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: i64,
            #[serde(default)]
            m: Option<std::collections::BTreeMap<String, String>>,
        }
        let at = FieldPath::root().field("x");
        let e = from_value::<T>(&serde_json::json!({"n": "sk-1"}), &at).unwrap_err();
        assert_eq!(e.to_string(), "x.n: invalid type: a string, expected i64");
        let e = from_value::<T>(&serde_json::json!({"n": 1, "m": "Bearer k"}), &at).unwrap_err();
        assert_eq!(e.to_string(), "x.m: invalid type: a string, expected a map");
        let e = from_value::<T>(&serde_json::json!({"n": true}), &at).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.n: invalid type: boolean `true`, expected i64"
        );
    }

    #[test]
    fn paths_render_like_the_contract() {
        let p = FieldPath::root()
            .field("services")
            .index(0)
            .field("routes")
            .index(1);
        assert_eq!(p.as_str(), "services[0].routes[1]");
        assert_eq!(p.join("plugins.x"), "services[0].routes[1].plugins.x");
        assert_eq!(p.join("[2].a"), "services[0].routes[1][2].a");
        let e = p.field("weight").error("must be >= 0").in_source("gw.yaml");
        assert_eq!(
            e.to_string(),
            "gw.yaml: services[0].routes[1].weight: must be >= 0"
        );
    }

    #[test]
    fn an_empty_key_is_named_too() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: Option<u8>,
        }
        let at = FieldPath::root();
        let e = from_value::<S>(&serde_json::json!({"": 1}), &at).unwrap_err();
        assert_eq!(e.path, "\"\"", "{e}");
        let e =
            from_value::<Vec<S>>(&serde_json::json!([{}, {"": 1}]), &at.field("x")).unwrap_err();
        assert_eq!(e.path, "x[1].\"\"", "{e}");
        assert_eq!(at.field("").field("b").as_str(), "\"\".b");
    }
}

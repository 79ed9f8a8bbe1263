//! `Secret` objects (v1) and how other objects use them: `data` (base64,
//! as the API server stores it) and `stringData` (plain text, over `data`
//! for the same key, as the API server merges them), decoded once; a
//! lookup by namespace and name; and the Ingress Controller's way of
//! merging a Secret into a plugin config (`plugins[].secretRef`: each key,
//! dot-separated, is a path into the config).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};

use super::documents::Object;
use crate::config::error::ConfigError;

/// A Secret's decoded keys.
pub type SecretData = BTreeMap<String, String>;

/// Every Secret of the manifests, by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct Secrets {
    by_name: BTreeMap<(String, String), SecretData>,
}

impl Secrets {
    /// Reads a `Secret` object.
    pub fn add(&mut self, obj: &Object) -> Result<(), ConfigError> {
        let data = decode(obj)?;
        let key = (obj.namespace.clone(), obj.name.clone());
        if self.by_name.insert(key, data).is_some() {
            return Err(obj
                .path("metadata")
                .error(format!("{} is defined twice", obj.id())));
        }
        Ok(())
    }

    /// The Secret `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&SecretData> {
        self.by_name.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The Secret `name` in `namespace`, or an error at `at` saying it
    /// is not among the manifests.
    pub fn require(
        &self,
        namespace: &str,
        name: &str,
        at: &crate::config::FieldPath,
    ) -> Result<&SecretData, ConfigError> {
        self.get(namespace, name).ok_or_else(|| {
            at.error(format!(
                "Secret {namespace}/{name} is not among the manifests given with -c"
            ))
        })
    }
}

fn decode(obj: &Object) -> Result<SecretData, ConfigError> {
    let mut out = SecretData::new();
    for key in obj.value.as_object().into_iter().flat_map(|m| m.keys()) {
        if ![
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        ]
        .contains(&key.as_str())
        {
            return Err(obj
                .path(key)
                .error("unknown field of a Secret (expected data, stringData, type, immutable)"));
        }
    }
    if let Some(data) = section(obj, "data")? {
        for (k, v) in data {
            let at = obj.path("data").field(k);
            let text = v
                .as_str()
                .ok_or_else(|| at.error("must be a base64 string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| at.error(format!("is not valid base64: {e}")))?;
            let s = String::from_utf8(bytes)
                .map_err(|_| at.error("decodes to bytes that are not UTF-8 text"))?;
            out.insert(k.clone(), s);
        }
    }
    if let Some(data) = section(obj, "stringData")? {
        for (k, v) in data {
            let at = obj.path("stringData").field(k);
            let s = v.as_str().ok_or_else(|| at.error("must be a string"))?;
            out.insert(k.clone(), s.to_owned());
        }
    }
    Ok(out)
}

fn section<'a>(obj: &'a Object, name: &str) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match obj.value.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(obj.path(name).error("must be a mapping of keys to values")),
    }
}

/// Sets `value` at the dot-separated `key` of `config` (the Ingress
/// Controller's `InsertKeyInMap`): missing mappings are created. Where
/// the controller stops at lists, ringway goes on: a number indexes an
/// existing list (`instances.0.auth.header.Authorization`).
pub fn insert_key(config: &mut Value, key: &str, value: &str) {
    let (part, rest) = match key.split_once('.') {
        Some((p, r)) => (p, Some(r)),
        None => (key, None),
    };
    if let Value::Array(list) = config {
        if let Some(i) = part.parse::<usize>().ok().filter(|i| *i < list.len()) {
            match rest {
                None => list[i] = Value::from(value),
                Some(r) => insert_key(&mut list[i], r, value),
            }
            return;
        }
    }
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    if let Value::Object(map) = config {
        match rest {
            None => {
                map.insert(part.to_owned(), Value::from(value));
            }
            Some(r) => {
                let next = map
                    .entry(part.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                insert_key(next, r, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::documents::{documents, objects};
    use super::*;
    use serde_json::json;

    fn secrets(text: &str) -> Result<Secrets, ConfigError> {
        let mut s = Secrets::default();
        for o in objects(documents(text).unwrap(), "f").unwrap() {
            s.add(&o)?;
        }
        Ok(s)
    }

    #[test]
    fn data_is_base64_and_string_data_wins() {
        let s = secrets("apiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: aic}\ndata: {key: am9obi1rZXk=, other: YQ==}\nstringData: {other: b}\n").unwrap();
        let d = s.get("aic", "k").unwrap();
        assert_eq!(d["key"], "john-key");
        assert_eq!(d["other"], "b");
        assert!(s.get("default", "k").is_none());
    }

    #[test]
    fn bad_base64_names_the_key() {
        let e = secrets("apiVersion: v1\nkind: Secret\nmetadata: {name: k}\ndata: {key: '***'}\n")
            .unwrap_err();
        assert_eq!(e.path, "Secret/default/k: data.key");
    }

    #[test]
    fn keys_are_paths_into_the_config() {
        let mut c = json!({"instances": [{"name": "a", "auth": {"header": {}}}]});
        insert_key(&mut c, "instances.0.auth.header.Authorization", "Bearer x");
        insert_key(&mut c, "logging.summaries", "true");
        insert_key(&mut c, "key", "v");
        assert_eq!(
            c["instances"][0]["auth"]["header"]["Authorization"],
            "Bearer x"
        );
        assert_eq!(c["logging"]["summaries"], "true");
        assert_eq!(c["key"], "v");
    }
}

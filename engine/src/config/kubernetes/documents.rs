//! Splitting a file into Kubernetes objects: the YAML documents of a
//! multi-document file (`---`), `kind: List` flattened, each object's
//! `apiVersion`, `kind` and `metadata` read and checked. What an object's
//! `spec` means is for the translators; this file only says which object
//! it is and where it came from.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::error::{ConfigError, FieldPath};

/// The namespace of an object that names none (as `kubectl apply` without
/// `-n` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One Kubernetes object of a manifest file.
#[derive(Debug, Clone)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `metadata.labels`.
    pub labels: Map<String, Value>,
    /// The whole object as written.
    pub value: Value,
    /// The file it was read from.
    pub file: String,
}

impl Object {
    /// `Kind/namespace/name`, as errors and logs name it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    /// The path of field `top` (`spec`, `data`) for errors:
    /// `ApisixRoute/default/foo: spec`.
    pub fn path(&self, top: &str) -> FieldPath {
        FieldPath::from_origin(format!("{}: {top}", self.id()))
    }

    /// The group of `apiVersion` (empty for the core group's `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    /// The object's `spec` (an empty mapping when it has none).
    pub fn spec(&self) -> Value {
        self.value
            .get("spec")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
}

/// The YAML documents of `text`, in order (empty documents left out).
pub fn documents(text: &str) -> Result<Vec<Value>, ConfigError> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::new(at, format!("invalid YAML: {e}"))
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Whether `doc` is a Kubernetes object (has `apiVersion` and `kind`).
pub fn is_object(doc: &Value) -> bool {
    doc.get("apiVersion").is_some() && doc.get("kind").is_some()
}

/// The objects of a manifest file's documents; `kind: List` items are
/// objects of their own.
pub fn objects(docs: Vec<Value>, file: &str) -> Result<Vec<Object>, ConfigError> {
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = FieldPath::from_origin(format!("document {}", i + 1));
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            let items = doc
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| at.field("items").error("a List needs a list of `items`"))?;
            for (j, item) in items.iter().enumerate() {
                out.push(object(item.clone(), &at.field("items").index(j), file)?);
            }
        } else {
            out.push(object(doc, &at, file)?);
        }
    }
    Ok(out)
}

fn object(doc: Value, at: &FieldPath, file: &str) -> Result<Object, ConfigError> {
    if !doc.is_object() {
        return Err(at.error("expected a Kubernetes object (a mapping)"));
    }
    if !is_object(&doc) {
        return Err(at.error(
            "not a Kubernetes object (no `apiVersion` and `kind`): a file of manifests holds only objects; put ADC configuration (`services`, `gateway`, ...) in a file of its own",
        ));
    }
    let text = |key: &str| -> Result<String, ConfigError> {
        match doc.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(at.field(key).error("must be a non-empty string")),
        }
    };
    let api_version = text("apiVersion")?;
    let kind = text("kind")?;
    let meta = doc.get("metadata").and_then(Value::as_object);
    let name = match meta.and_then(|m| m.get("name")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(at
                .field("metadata")
                .field("name")
                .error(format!("a {kind} needs a non-empty `metadata.name`")))
        }
    };
    let namespace = match meta.and_then(|m| m.get("namespace")) {
        None | Some(Value::Null) => DEFAULT_NAMESPACE.to_owned(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(at
                .field("metadata")
                .field("namespace")
                .error("must be a non-empty string"))
        }
    };
    let labels = meta
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(Object {
        api_version,
        kind,
        namespace,
        name,
        labels,
        value: doc,
        file: file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_files_become_objects_with_default_namespace() {
        let text = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n# empty\n---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: Service, metadata: {name: a, namespace: aic}}\n";
        let objs = objects(documents(text).unwrap(), "f.yaml").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].id(), "Secret/default/s");
        assert_eq!(objs[1].id(), "Service/aic/a");
        assert_eq!(objs[1].group(), "");
        assert_eq!(
            objs[0].path("data").field("k").as_str(),
            "Secret/default/s: data.k"
        );
    }

    #[test]
    fn objects_without_a_name_or_kind_are_refused() {
        let e = objects(
            documents("apiVersion: v1\nkind: Secret\nmetadata: {}\n").unwrap(),
            "f",
        )
        .unwrap_err();
        assert_eq!(e.path, "document 1.metadata.name");
        let e = objects(
            documents("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\nservices: []\n")
                .unwrap(),
            "f",
        )
        .unwrap_err();
        assert_eq!(e.path, "document 2", "{e}");
        assert!(e.reason.contains("apiVersion"), "{e}");
    }
}

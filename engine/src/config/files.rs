//! The configuration of several files (`-c` repeated): at most one ADC
//! file (`services`, `consumers`, ..., and the `gateway:` section) and any
//! number of files of Kubernetes manifests, told apart by their content
//! (documents with `apiVersion` and `kind` are manifests). The manifests
//! of all files are translated together (an HTTPRoute may use a
//! PluginConfig or Secret of another file), then added to the ADC file's
//! resources; a resource both define is refused. Errors name the file the
//! bad field is in.

use std::collections::BTreeMap;

use super::kubernetes;
use super::resources::{Kind, Resources};
use super::{parse_str, ConfigError, Parsed};

/// One configuration file: its name (as given) and text.
#[derive(Debug, Clone)]
pub struct FileText {
    pub name: String,
    pub text: String,
}

/// Several files read as one configuration.
#[derive(Debug)]
pub struct Combined {
    pub parsed: Parsed,
    /// The ADC file, if one was given.
    adc_file: Option<String>,
    /// Each Kubernetes object (`Kind/ns/name`) and its file.
    object_files: BTreeMap<String, String>,
    /// The first file given.
    first: String,
}

impl Combined {
    /// `e` with the file its field is in (errors found when the resources
    /// are compiled name a resource's origin, not a file).
    pub fn attribute(&self, e: ConfigError) -> ConfigError {
        if e.source.is_some() {
            return e;
        }
        let file = e
            .path
            .split_once(": ")
            .and_then(|(obj, _)| self.object_files.get(obj))
            .or(self.adc_file.as_ref())
            .unwrap_or(&self.first)
            .clone();
        e.in_source(file)
    }
}

/// Whether `text` is a file of Kubernetes manifests.
fn is_manifest(text: &str) -> Option<Vec<serde_json::Value>> {
    let docs = kubernetes::documents(text).ok()?;
    docs.iter().any(kubernetes::is_object).then_some(docs)
}

/// Reads `files` as one configuration (`lookup` replaces `${VAR}` in the
/// ADC file; manifests are read as written).
pub fn parse_files(
    files: &[FileText],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Combined, ConfigError> {
    let mut adc: Option<(String, Parsed)> = None;
    let mut objects = Vec::new();
    for f in files {
        match is_manifest(&f.text) {
            Some(docs) => {
                let objs = kubernetes::objects(docs, &f.name).map_err(|e| e.in_source(&f.name))?;
                objects.extend(objs);
            }
            None => {
                if let Some((first, _)) = &adc {
                    return Err(ConfigError::new(
                        "",
                        format!(
                            "a second ADC configuration file (the first is {first}): give one ADC file (with the `gateway` section) and any number of files of Kubernetes manifests"
                        ),
                    )
                    .in_source(&f.name));
                }
                let p = parse_str(&f.text, lookup).map_err(|e| e.in_source(&f.name))?;
                adc = Some((f.name.clone(), p));
            }
        }
    }
    let adc_file = adc.as_ref().map(|(n, _)| n.clone());
    let parsed = match adc {
        Some((_, p)) => p,
        None => parse_str("", lookup)?,
    };
    let object_files = objects.iter().map(|o| (o.id(), o.file.clone())).collect();
    let combined = |parsed| Combined {
        parsed,
        adc_file: adc_file.clone(),
        object_files,
        first: files.first().map(|f| f.name.clone()).unwrap_or_default(),
    };
    if objects.is_empty() {
        return Ok(combined(parsed));
    }
    let from_k8s = kubernetes::to_resources(&objects)?;
    let mut res = (*parsed.resources).clone();
    merge(&mut res, from_k8s).map_err(|e| match &adc_file {
        Some(f) => e.in_source(f),
        None => e,
    })?;
    Ok(combined(Parsed {
        gateway: parsed.gateway,
        resources: std::sync::Arc::new(res),
    }))
}

/// Adds the manifests' resources to the ADC file's; one both define is an
/// error naming both.
fn merge(res: &mut Resources, k8s: Resources) -> Result<(), ConfigError> {
    fn add<T>(
        into: &mut BTreeMap<String, T>,
        from: BTreeMap<String, T>,
        kind: Kind,
        origins: &BTreeMap<(Kind, String), String>,
        theirs: &BTreeMap<(Kind, String), String>,
    ) -> Result<(), ConfigError> {
        for (id, v) in from {
            if into.contains_key(&id) {
                let mine = origins
                    .get(&(kind, id.clone()))
                    .cloned()
                    .unwrap_or_default();
                let other = theirs.get(&(kind, id.clone())).cloned().unwrap_or_default();
                return Err(ConfigError::new(
                    mine,
                    format!("{} `{id}` is defined by {other} too", kind.collection()),
                ));
            }
            into.insert(id, v);
        }
        Ok(())
    }
    add(
        &mut res.routes,
        k8s.routes,
        Kind::Route,
        &res.origins,
        &k8s.origins,
    )?;
    add(
        &mut res.services,
        k8s.services,
        Kind::Service,
        &res.origins,
        &k8s.origins,
    )?;
    add(
        &mut res.upstreams,
        k8s.upstreams,
        Kind::Upstream,
        &res.origins,
        &k8s.origins,
    )?;
    add(
        &mut res.consumers,
        k8s.consumers,
        Kind::Consumer,
        &res.origins,
        &k8s.origins,
    )?;
    add(
        &mut res.global_rules,
        k8s.global_rules,
        Kind::GlobalRule,
        &res.origins,
        &k8s.origins,
    )?;
    res.credentials.extend(k8s.credentials);
    res.origins.extend(k8s.origins);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> FileText {
        FileText {
            name: name.into(),
            text: text.into(),
        }
    }

    const ROUTE: &str = "apiVersion: apisix.apache.org/v2\nkind: ApisixRoute\nmetadata: {name: r}\nspec:\n  http: [{name: a, match: {paths: [/a]}, backends: [{serviceName: web, servicePort: 80}]}]\n";

    #[test]
    fn a_gateway_file_and_manifests_combine() {
        let none = |_: &str| None;
        let c = parse_files(
            &[file("gw.yaml", "gateway: {workers: 1}\nservices: [{name: s, upstream: {nodes: [{host: a, port: 1, weight: 1}]}, routes: [{name: x, uris: [/x]}]}]\n"), file("k.yaml", ROUTE)],
            &none,
        )
        .unwrap();
        assert_eq!(c.parsed.resources.routes.len(), 2);
        assert_eq!(c.parsed.gateway.workers, 1);
        let e = c.attribute(ConfigError::new("ApisixRoute/default/r: spec.http[0]", "x"));
        assert_eq!(e.source.as_deref(), Some("k.yaml"));
        let e = c.attribute(ConfigError::new("services[0]", "x"));
        assert_eq!(e.source.as_deref(), Some("gw.yaml"));
    }

    #[test]
    fn two_adc_files_are_refused() {
        let none = |_: &str| None;
        let e = parse_files(
            &[
                file("a.yaml", "services: []\n"),
                file("b.yaml", "consumers: []\n"),
            ],
            &none,
        )
        .unwrap_err();
        assert_eq!(e.source.as_deref(), Some("b.yaml"));
        assert!(e.reason.contains("a.yaml"), "{e}");
    }
}

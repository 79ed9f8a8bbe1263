//! Configuration: the file model, `${VAR}` interpolation, validation with
//! field paths and the bounds of every number. Nothing here is compiled:
//! [`crate::snapshot`] turns what this reads into what workers serve from.
//!
//! Flow: YAML text → JSON value tree → interpolation → ADC conversion into
//! APISIX-shaped [`Resources`] (here) → `snapshot::compile` into a
//! `Snapshot`. The Admin API enters at `Resources`, so the file and the
//! API share every check. Files of Kubernetes manifests ([`kubernetes`])
//! become `Resources` too, and several files (`-c` repeated) are read as
//! one configuration ([`files`]).

pub mod adc;
pub mod bounds;
pub mod deployment;
pub mod env;
pub mod error;
pub mod files;
pub mod gateway;
pub mod kubernetes;
pub mod resources;
pub mod standalone;

use std::path::Path;
use std::sync::Arc;

pub use error::{from_value, ConfigError, FieldPath};
pub use gateway::GatewaySettings;
pub use resources::Resources;

/// A config document read and validated, not yet compiled.
#[derive(Debug)]
pub struct Parsed {
    pub gateway: Arc<GatewaySettings>,
    pub resources: Arc<Resources>,
}

/// Reads a config file's text; an error names the file.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new("", format!("cannot read file: {e}")).in_source(path.display().to_string())
    })
}

/// Reads a config document from text (YAML, which includes JSON):
/// interpolated, validated, converted to APISIX-shaped resources.
pub fn parse_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let doc: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = match (e.location(), second_document(text)) {
                (Some(l), _) => format!("line {} column {}", l.line(), l.column()),
                // The one error serde_yaml gives without a place.
                (None, Some(line)) => format!("line {line} column 1"),
                (None, None) => "line 1 column 1".to_owned(),
            };
            ConfigError::new(at, format!("invalid YAML: {e}"))
        })?
    };
    let root = FieldPath::root();
    // A document that is not a mapping is refused as such, before a
    // placeholder that would be all of it is looked at (an error there
    // would have no field to name).
    let mut doc = match doc {
        serde_json::Value::Object(m) => serde_json::Value::Object(m),
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        _ => return Err(ConfigError::new("", "the document must be a mapping")),
    };
    env::interpolate(&mut doc, &root, lookup)?;
    let serde_json::Value::Object(map) = doc else {
        return Err(ConfigError::new("", "the document must be a mapping"));
    };
    let mut gateway = GatewaySettings::from_value(map.get("gateway"), &root.field("gateway"))?;
    if let Some(d) = map.get("deployment") {
        let d = deployment::Deployment::from_value(d, &root.field("deployment"))?;
        if !d.has_admin() {
            let asked = map
                .get("gateway")
                .and_then(|g| g.get("admin"))
                .is_some_and(|a| a.get("enabled") != Some(&serde_json::Value::Bool(false)));
            if asked {
                return Err(root.field("gateway").field("admin").error(
                    "a data plane serves no Admin API (deployment.role: data_plane): remove it or set `enabled: false`",
                ));
            }
            gateway.admin = None;
        }
        if let Some(a) = &d.admin {
            if map.get("gateway").and_then(|g| g.get("admin")).is_some() {
                return Err(root
                    .field("deployment")
                    .field("admin")
                    .error("the Admin API is set in `gateway.admin` too: set it in one place"));
            }
            gateway.admin = a.enabled.then(|| {
                let listen = a
                    .listen
                    .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 9180)));
                gateway::AdminSettings::new(listen, a.key.clone())
            });
        }
        if d.provider == deployment::Provider::Etcd {
            if let Some(key) = ["services", "consumers", "global_rules", "plugin_metadata"]
                .into_iter()
                .find(|k| map.contains_key(*k))
            {
                return Err(root.field(key).error(
                    "the configuration lives in etcd (config_provider: etcd): put it there (Admin API, ADC, the Ingress Controller), not in this file",
                ));
            }
        }
        if d.api_driven() && gateway.admin.is_none() {
            return Err(root.field("gateway").field("admin").error(
                "API-driven standalone (deployment.role traditional, config_provider yaml/json) is configured through the Admin API (PUT /apisix/admin/configs): it cannot be disabled",
            ));
        }
        gateway.deployment = Some(d);
    }
    let gateway = Arc::new(gateway);
    let resources = Arc::new(adc::to_resources(&map)?);
    Ok(Parsed { gateway, resources })
}

/// The line where a second YAML document starts (a `---` after content),
/// if the text has one.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return Some(i + 1);
        }
        let t = line.trim_start();
        content |= marker || !(t.is_empty() || t.starts_with('#') || t.starts_with('%'));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_plane_has_no_admin_api() {
        let none = |_: &str| None;
        let dp = "deployment: {role: data_plane, role_data_plane: {config_provider: yaml}}\n";
        let p = parse_str(dp, &none).unwrap();
        assert!(p.gateway.admin.is_none());
        assert!(p.gateway.deployment.is_some());
        let asked = format!("{dp}gateway: {{admin: {{listen: \"127.0.0.1:9180\"}}}}\n");
        let e = parse_str(&asked, &none).unwrap_err();
        assert_eq!(e.path, "gateway.admin", "{e}");
        let off = format!("{dp}gateway: {{admin: {{enabled: false}}}}\n");
        assert!(parse_str(&off, &none).is_ok());
        // Without the section: as before.
        assert!(parse_str("", &none).unwrap().gateway.admin.is_some());
    }

    #[test]
    fn api_driven_standalone_needs_its_admin_api() {
        let none = |_: &str| None;
        let api = "deployment: {role: traditional, role_traditional: {config_provider: json}}\n";
        let p = parse_str(api, &none).unwrap();
        assert!(p.gateway.admin.is_some());
        let off = format!("{api}gateway: {{admin: {{enabled: false}}}}\n");
        let e = parse_str(&off, &none).unwrap_err();
        assert_eq!(e.path, "gateway.admin", "{e}");
        assert!(e.reason.contains("/apisix/admin/configs"), "{e}");
    }

    #[test]
    fn apisix_deployment_admin_sets_the_admin_api() {
        let none = |_: &str| None;
        let doc = "deployment:\n  role: traditional\n  role_traditional: {config_provider: yaml}\n  admin:\n    admin_key: [{name: admin, key: k1, role: admin}]\n    admin_listen: {ip: 127.0.0.1, port: 9181}\n";
        let p = parse_str(doc, &none).unwrap();
        let a = p.gateway.admin.as_ref().unwrap();
        assert_eq!(a.key.as_deref(), Some("k1"));
        assert_eq!(a.listen, "127.0.0.1:9181".parse().unwrap());
        let both = format!("{doc}gateway: {{admin: {{key: k2}}}}\n");
        let e = parse_str(&both, &none).unwrap_err();
        assert_eq!(e.path, "deployment.admin", "{e}");
    }

    #[test]
    fn yaml_errors_say_which_line() {
        let none = |_: &str| None;
        let e = parse_str("services: [\n  - {name: x\n", &none).unwrap_err();
        assert!(e.path.starts_with("line "), "{e}");
        let e = parse_str("# two\n---\ngateway: {}\n---\nservices: []\n", &none).unwrap_err();
        assert_eq!(e.path, "line 4 column 1", "{e}");
        assert!(e.reason.contains("more than one document"), "{e}");
        let e = parse_str("a: 1\n--- \nb: 2\n", &none).unwrap_err();
        assert_eq!(e.path, "line 2 column 1", "{e}");
    }
}

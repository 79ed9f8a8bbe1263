//! `prometheus`: APISIX's plugin that turns metrics on for a route,
//! service or global rule. ringway records APISIX's labelled families
//! for every route whether or not the plugin is set (its metrics listener
//! is on by default, and a gateway whose dashboards go blank until each
//! route opts in surprises more than it helps); the plugin is accepted so
//! APISIX configurations load unchanged, and its one attribute,
//! `prefer_name`, is honoured: the `route` and `service` labels carry the
//! route's and its service's names instead of their ids. A route's own
//! (or its service's) setting wins over a global rule's.
//!
//! It has no phase: the labels are compiled with the route
//! (`snapshot::compile`), and the worker records at the log phase.

use serde::Deserialize;
use serde_json::Value;

use crate::config::{from_value, ConfigError, FieldPath};

pub const NAME: &str = "prometheus";
/// APISIX's priority for `prometheus`.
pub const PRIORITY: i32 = 500;

/// The compiled plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prometheus {
    pub prefer_name: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusFile {
    #[serde(default)]
    prefer_name: bool,
    #[serde(default, rename = "_meta")]
    _meta: Option<Value>,
}

/// The registry's entry: on a route, service or global rule (a consumer
/// has nothing to export by).
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    _meta: &super::meta::Meta,
    _cx: &mut super::CompileCx<'_, '_>,
) -> Result<Option<Prometheus>, ConfigError> {
    let f: PrometheusFile = from_value(value, at)?;
    Ok(match scope {
        super::Scope::Consumer => None,
        _ => Some(Prometheus {
            prefer_name: f.prefer_name,
        }),
    })
}

impl super::phase::Phases for Prometheus {
    type Request<'a> = ();
}

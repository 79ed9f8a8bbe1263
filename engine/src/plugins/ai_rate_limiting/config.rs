//! `ai-rate-limiting`'s configuration: APISIX's schema (and the
//! `limit-count` Redis fields it borrows), field for field, with paths in
//! every error. Fields ringway does not implement are named and refused.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginFile {
    pub limit: Option<Value>,
    pub time_window: Option<Value>,
    pub show_limit_quota_header: Option<bool>,
    pub limit_strategy: Option<String>,
    pub instances: Option<Vec<InstanceLimitFile>>,
    pub rejected_code: Option<i64>,
    pub rejected_msg: Option<String>,
    pub policy: Option<String>,
    pub allow_degradation: Option<bool>,
    pub redis_host: Option<String>,
    pub redis_port: Option<i64>,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    pub redis_database: Option<i64>,
    pub redis_timeout: Option<i64>,
    pub redis_ssl: Option<bool>,
    pub redis_ssl_verify: Option<bool>,
    pub redis_cluster_nodes: Option<Vec<String>>,
    pub redis_cluster_name: Option<String>,
    pub redis_cluster_ssl: Option<bool>,
    pub redis_cluster_ssl_verify: Option<bool>,
    pub redis_sentinels: Option<Vec<SentinelNodeFile>>,
    pub redis_master_name: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub rules: Option<Vec<RuleFile>>,
    pub cost_expr: Option<String>,
    #[serde(rename = "_meta")]
    pub _meta: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstanceLimitFile {
    pub name: String,
    pub limit: Value,
    pub time_window: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SentinelNodeFile {
    pub host: String,
    pub port: i64,
}

/// The sentinel fields, for "only with policy redis-sentinel" checks.
pub(super) fn sentinel_fields(f: &PluginFile) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |set: bool, name| {
        if set {
            v.push(name)
        }
    };
    add(f.redis_sentinels.is_some(), "redis_sentinels");
    add(f.redis_master_name.is_some(), "redis_master_name");
    add(f.sentinel_username.is_some(), "sentinel_username");
    add(f.sentinel_password.is_some(), "sentinel_password");
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub count: Value,
    pub time_window: Value,
    pub key: String,
    pub header_prefix: Option<String>,
}

/// The Redis fields, for "only with policy X" checks.
pub(super) fn redis_fields(f: &PluginFile) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |set: bool, name| {
        if set {
            v.push(name)
        }
    };
    add(f.redis_host.is_some(), "redis_host");
    add(f.redis_port.is_some(), "redis_port");
    add(f.redis_username.is_some(), "redis_username");
    add(f.redis_database.is_some(), "redis_database");
    add(f.redis_ssl.is_some(), "redis_ssl");
    add(f.redis_ssl_verify.is_some(), "redis_ssl_verify");
    v
}

pub(super) fn cluster_fields(f: &PluginFile) -> Vec<&'static str> {
    let mut v = Vec::new();
    if f.redis_cluster_nodes.is_some() {
        v.push("redis_cluster_nodes");
    }
    if f.redis_cluster_name.is_some() {
        v.push("redis_cluster_name");
    }
    if f.redis_cluster_ssl.is_some() {
        v.push("redis_cluster_ssl");
    }
    if f.redis_cluster_ssl_verify.is_some() {
        v.push("redis_cluster_ssl_verify");
    }
    v
}

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
    pub redis_keepalive_timeout: Option<i64>,
    pub redis_keepalive_pool: Option<i64>,
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
    /// ringway's extension: claim Redis budgets in chunks of this many
    /// tokens ([`super::lease`]).
    pub redis_lease_tokens: Option<i64>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub count: Value,
    pub time_window: Value,
    pub key: String,
    pub header_prefix: Option<String>,
    /// ringway's extension: keys the local policy keeps for this rule.
    pub max_keys: Option<i64>,
}

/// The names of the fields that are set, of `fields`.
fn set(fields: &[(bool, &'static str)]) -> Vec<&'static str> {
    fields.iter().filter(|(s, _)| *s).map(|(_, n)| *n).collect()
}

/// The fields of `policy: redis`, for "only with policy X" checks.
pub(super) fn redis_fields(f: &PluginFile) -> Vec<&'static str> {
    set(&[
        (f.redis_host.is_some(), "redis_host"),
        (f.redis_port.is_some(), "redis_port"),
        (f.redis_username.is_some(), "redis_username"),
        (f.redis_database.is_some(), "redis_database"),
        (f.redis_ssl.is_some(), "redis_ssl"),
        (f.redis_ssl_verify.is_some(), "redis_ssl_verify"),
    ])
}

/// The fields of `policy: redis-cluster`.
pub(super) fn cluster_fields(f: &PluginFile) -> Vec<&'static str> {
    set(&[
        (f.redis_cluster_nodes.is_some(), "redis_cluster_nodes"),
        (f.redis_cluster_name.is_some(), "redis_cluster_name"),
        (f.redis_cluster_ssl.is_some(), "redis_cluster_ssl"),
        (
            f.redis_cluster_ssl_verify.is_some(),
            "redis_cluster_ssl_verify",
        ),
    ])
}

/// The fields of `policy: redis-sentinel`.
pub(super) fn sentinel_fields(f: &PluginFile) -> Vec<&'static str> {
    set(&[
        (f.redis_sentinels.is_some(), "redis_sentinels"),
        (f.redis_master_name.is_some(), "redis_master_name"),
        (f.sentinel_username.is_some(), "sentinel_username"),
        (f.sentinel_password.is_some(), "sentinel_password"),
    ])
}

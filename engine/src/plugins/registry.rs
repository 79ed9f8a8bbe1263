//! The registry: one line per plugin. A line names the [`Plugin`] variant,
//! the compiled type (which implements [`Phases`]) and the plugin's
//! folder, which provides `NAME`, `PRIORITY` and `compile` (the config
//! checked for its scope; `Ok(None)` when valid but adding nothing to a
//! chain there, as a consumer's `key-auth` credential). Everything else —
//! the enum, its names and priorities, each phase's dispatch, the
//! per-request state of AI-path plugins, the list of supported names —
//! is generated from the lines, with static dispatch (a `match`, no boxes
//! or virtual calls, async phases without allocation).

use serde_json::Value;

use super::phase::{AccessCx, Flow, Gate, Phases, Used};
use super::{
    ai_proxy_multi, ai_rate_limiting, http_logger, kafka_logger, key_auth, logger, prometheus,
};
use super::{meta, CompileCx, Scope};
use super::{opentelemetry, request_id};
use crate::config::{ConfigError, FieldPath};
use crate::exchange::ctx::RequestCtx;
use crate::http::vars::VarSource;
use crate::http::RequestHead;
use crate::loggers::WorkerQueue;
use crate::observe::redact::Redaction;

macro_rules! registry {
    ($($variant:ident($ty:ty) = $module:ident,)*) => {
        /// A compiled plugin.
        #[derive(Debug)]
        pub enum Plugin {
            $($variant($ty),)*
        }

        /// An AI-path plugin's state for one request ([`Phases::Request`]).
        pub enum RequestState<'a> {
            $($variant(<$ty as Phases>::Request<'a>),)*
        }

        /// The plugins ringway implements, by APISIX name.
        pub const SUPPORTED: &[&str] = &[$($module::NAME,)*];

        /// Compiles the plugin `name`'s config.
        pub(super) fn compile_one(
            name: &str,
            value: &Value,
            at: &FieldPath,
            scope: Scope,
            meta: &meta::Meta,
            cx: &mut CompileCx<'_, '_>,
        ) -> Result<Option<Plugin>, ConfigError> {
            $(if name == $module::NAME {
                return Ok($module::compile(value, at, scope, meta, cx)?.map(Plugin::$variant));
            })*
            Err(at.error(format!(
                "plugin `{name}` is not supported by ringway (supported: {})",
                SUPPORTED.join(", ")
            )))
        }

        impl Plugin {
            pub fn name(&self) -> &'static str {
                match self { $(Plugin::$variant(_) => $module::NAME,)* }
            }

            /// APISIX's plugin priority: higher runs first.
            pub fn priority(&self) -> i32 {
                match self { $(Plugin::$variant(_) => $module::PRIORITY,)* }
            }

            /// Whether it has phases on the AI path ([`Phases::AI_PATH`]).
            pub fn on_ai_path(&self) -> bool {
                match self { $(Plugin::$variant(_) => <$ty as Phases>::AI_PATH,)* }
            }

            /// Whether it has a log phase ([`Phases::LOGS`]).
            pub fn logs(&self) -> bool {
                match self { $(Plugin::$variant(_) => <$ty as Phases>::LOGS,)* }
            }

            /// A fresh state for one request.
            pub(super) fn new_request(&self) -> RequestState<'_> {
                match self { $(Plugin::$variant(_) => RequestState::$variant(Default::default()),)* }
            }

            pub(super) fn rewrite(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
                match self { $(Plugin::$variant(p) => p.rewrite(cx),)* }
            }

            pub(super) async fn access<'a>(
                &'a self,
                st: &mut RequestState<'a>,
                vars: &VarSource<'_>,
            ) -> Gate<'a> {
                match (self, st) {
                    $((Plugin::$variant(p), RequestState::$variant(s)) => p.access(s, vars).await,)*
                    _ => Gate::Go,
                }
            }

            pub(super) async fn before_attempt<'a>(
                &'a self,
                st: &mut RequestState<'a>,
                instance: &str,
            ) -> Gate<'a> {
                match (self, st) {
                    $((Plugin::$variant(p), RequestState::$variant(s)) => {
                        p.before_attempt(s, instance).await
                    })*
                    _ => Gate::Go,
                }
            }

            pub(super) fn header_filter<'a>(
                &self,
                st: &RequestState<'a>,
                instance: &str,
                out: &mut Vec<u8>,
            ) {
                match (self, st) {
                    $((Plugin::$variant(p), RequestState::$variant(s)) => {
                        p.header_filter(s, instance, out)
                    })*
                    _ => {}
                }
            }

            pub(super) fn wants_raw_usage(&self) -> bool {
                match self { $(Plugin::$variant(p) => p.wants_raw_usage(),)* }
            }

            pub(super) fn on_usage<'a>(
                &self,
                st: &RequestState<'a>,
                instance: &str,
                used: &Used<'_>,
            ) {
                match (self, st) {
                    $((Plugin::$variant(p), RequestState::$variant(s)) => {
                        p.on_usage(s, instance, used)
                    })*
                    _ => {}
                }
            }

            pub(super) async fn after_answer<'a>(
                &self,
                st: &RequestState<'a>,
                instance: &str,
                used: &Used<'_>,
            ) {
                match (self, st) {
                    $((Plugin::$variant(p), RequestState::$variant(s)) => {
                        p.after_answer(s, instance, used).await
                    })*
                    _ => {}
                }
            }

            pub(super) fn wants_access(&self) -> bool {
                match self { $(Plugin::$variant(p) => p.wants_access(),)* }
            }

            pub(super) fn wants_after_answer(&self) -> bool {
                match self { $(Plugin::$variant(p) => p.wants_after_answer(),)* }
            }

            pub fn response_body_limit(&self) -> Option<usize> {
                match self { $(Plugin::$variant(p) => p.response_body_limit(),)* }
            }

            pub fn wants_request_body(&self) -> bool {
                match self { $(Plugin::$variant(p) => p.wants_request_body(),)* }
            }

            pub(super) fn log(
                &self,
                head: &RequestHead,
                ctx: &RequestCtx,
                queue: &WorkerQueue,
                redaction: &Redaction,
            ) {
                match self { $(Plugin::$variant(p) => p.log(head, ctx, queue, redaction),)* }
            }
        }
    };
}

registry! {
    AiProxyMulti(std::sync::Arc<ai_proxy_multi::AiProxyMulti>) = ai_proxy_multi,
    AiRateLimiting(std::sync::Arc<ai_rate_limiting::AiRateLimiting>) = ai_rate_limiting,
    HttpLogger(logger::Logger) = http_logger,
    KafkaLogger(logger::Logger) = kafka_logger,
    KeyAuth(key_auth::KeyAuth) = key_auth,
    Opentelemetry(opentelemetry::Opentelemetry) = opentelemetry,
    RequestId(request_id::RequestIdPlugin) = request_id,
    Prometheus(prometheus::Prometheus) = prometheus,
}

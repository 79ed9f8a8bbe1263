//! `ai-rate-limiting` on the AI path's phases: `access` checks the
//! key-based budgets (`rules`, whichever instance answers),
//! `before_attempt` the instance's, `header_filter` shows the quotas
//! (`show_limit_quota_header`), `on_usage` charges local budgets before
//! the answer's last bytes leave, `after_answer` Redis ones after it.

use std::sync::Arc;

use super::rules::{write_rule_headers, RulesVerdict};
use super::{write_quota_headers, AiRateLimiting, Quota, RuleHits, Verdict};
use crate::http::vars::VarSource;
use crate::plugins::phase::{Gate, Phases, Refusal, Used};

/// What one request found: the rules it hit (with their quotas before
/// it), and the quota of the instance about to be tried.
#[derive(Default)]
pub struct Budgets<'a> {
    rule_hits: RuleHits<'a>,
    /// Set by `before_attempt` when the headers are shown.
    quota: Option<Quota>,
}

impl Phases for Arc<AiRateLimiting> {
    type Request<'a> = Budgets<'a>;
    const AI_PATH: bool = true;

    fn wants_access(&self) -> bool {
        self.has_rules()
    }

    async fn access<'a>(&'a self, st: &mut Self::Request<'a>, vars: &VarSource<'_>) -> Gate<'a> {
        if !self.has_rules() {
            return Gate::Go;
        }
        match Box::pin(self.check_rules(vars)).await {
            RulesVerdict::Allowed(hits) => {
                st.rule_hits = hits;
                Gate::Go
            }
            RulesVerdict::Exhausted(hits) => {
                let mut headers = Vec::new();
                if self.show_headers {
                    for (hit, q) in &hits {
                        write_rule_headers(&mut headers, &hit.rule.prefix, q);
                    }
                }
                Gate::Spent(self.refusal(headers))
            }
            RulesVerdict::StoreDown(e) => {
                Gate::Unavailable(format!("rate limit store unavailable: {e}"))
            }
        }
    }

    async fn before_attempt<'a>(&'a self, st: &mut Self::Request<'a>, instance: &str) -> Gate<'a> {
        st.quota = None;
        match self.check(instance).await {
            Verdict::Unlimited => Gate::Go,
            Verdict::Allowed(q) => {
                st.quota = self.show_headers.then_some(q);
                Gate::Go
            }
            Verdict::Exhausted(q) => {
                let mut headers = Vec::new();
                if self.show_headers {
                    write_quota_headers(&mut headers, instance, &q);
                }
                Gate::Spent(self.refusal(headers))
            }
            Verdict::StoreDown(e) => {
                Gate::Unavailable(format!("rate limit store unavailable: {e}"))
            }
        }
    }

    fn header_filter<'a>(&self, st: &Self::Request<'a>, instance: &str, out: &mut Vec<u8>) {
        if let Some(q) = &st.quota {
            write_quota_headers(out, instance, q);
        }
        if self.show_headers {
            for (hit, q) in &st.rule_hits {
                write_rule_headers(out, &hit.rule.prefix, q);
            }
        }
    }

    fn wants_raw_usage(&self) -> bool {
        self.strategy.wants_raw_usage()
    }

    fn on_usage<'a>(&self, st: &Self::Request<'a>, instance: &str, used: &Used<'_>) {
        self.charge_local(instance, used);
        self.charge_rules_local(&st.rule_hits, used);
    }

    fn wants_after_answer(&self) -> bool {
        // Local budgets were charged by `on_usage`.
        self.uses_redis()
    }

    async fn after_answer<'a>(&self, st: &Self::Request<'a>, instance: &str, used: &Used<'_>) {
        self.charge_remote(instance, used).await;
        self.charge_rules_remote(&st.rule_hits, used).await;
    }
}

impl AiRateLimiting {
    /// `rejected_code` with `rejected_msg` (or `_meta.error_response`)
    /// and the spent budgets' `headers`.
    fn refusal(&self, headers: Vec<u8>) -> Refusal<'_> {
        Refusal {
            status: self.rejected_code,
            content_type: self.rejected_type(),
            body: self.rejected_body(),
            headers,
        }
    }
}

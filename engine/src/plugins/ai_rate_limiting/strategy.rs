//! What a finished request costs a budget: the token counts it used and
//! the `limit_strategy` (or `cost_expr`) that prices them.

use std::sync::Arc;

use super::{cost_expr, warn_throttled};
use crate::plugins::phase::Used;

/// Which reported tokens count against the budget.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    /// `limit_strategy: expression` with its `cost_expr`.
    Expression(Arc<cost_expr::CostExpr>),
}

impl Strategy {
    /// What `used` costs, at most [`MAX_USED`](super::window::MAX_USED)
    /// (more than any budget holds, and a count every policy — atomics,
    /// Redis `INCRBY`, leases — can add without overflowing, whatever a
    /// provider reports).
    pub fn cost(&self, used: &Used<'_>) -> u64 {
        self.uncapped_cost(used).min(super::window::MAX_USED)
    }

    fn uncapped_cost(&self, used: &Used<'_>) -> u64 {
        match self {
            Strategy::TotalTokens => used.prompt.saturating_add(used.completion),
            Strategy::PromptTokens => used.prompt,
            Strategy::CompletionTokens => used.completion,
            Strategy::Expression(e) => match used.raw.map(|raw| e.cost(raw)) {
                Some(Some(cost)) => cost,
                // As APISIX: no usage object, or a result that is not a
                // number, charges nothing (and says so).
                Some(None) => {
                    warn_throttled(|| {
                        tracing::warn!("ai-rate-limiting cost_expr did not give a finite number; nothing charged")
                    });
                    0
                }
                None => {
                    warn_throttled(|| {
                        tracing::warn!("ai-rate-limiting cost_expr: the answer had no usage object; nothing charged")
                    });
                    0
                }
            },
        }
    }

    /// Whether costs need the provider's usage object.
    pub fn wants_raw_usage(&self) -> bool {
        matches!(self, Strategy::Expression(_))
    }
}

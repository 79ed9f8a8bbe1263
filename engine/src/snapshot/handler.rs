//! What answers a request on a route once its `rewrite` phase let it
//! through: the route's handler — plain proxying, or `ai-proxy-multi`
//! with the AI-path plugins in force for the request (the consumer's over
//! the route's over the global rules', resolved at compile time as far as
//! the request allows, [`crate::plugins::in_force`]). The server calls
//! [`CompiledRoute::handle`] and sees only "done" or "stream".

use std::sync::Arc;

use super::CompiledRoute;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::ClientConn;
use crate::http::RequestHead;
use crate::lane::Lane;
use crate::plugins::ai_proxy_multi::stream::StreamJob;
use crate::plugins::ai_proxy_multi::{handler::Call, AiProxyMulti};
use crate::plugins::consumers::Consumer;
use crate::plugins::Handled as AiHandled;
use crate::proxy::{Forwarded, RelayJob};
use crate::upstream::{TlsClients, UpstreamSpec};

/// What answers requests on a route once its plugins let them through.
#[derive(Debug)]
pub enum Handler {
    /// Plain HTTP proxying (`request_type` `traditional_http`).
    Upstream(Arc<UpstreamSpec>),
    /// `ai-proxy-multi` answers (an upstream, if any, is not used).
    Ai(Arc<AiProxyMulti>),
}

/// How a route's handler left a request.
pub enum Handled<'a> {
    /// Answered; whether the client connection stays open.
    Done(bool),
    /// An `ai-proxy-multi` event stream to relay: the caller runs it
    /// after the handler's state is gone.
    Stream(Box<StreamJob<'a>>),
    /// A plain answer's long body (chunked, or until the upstream closes)
    /// to relay, likewise.
    Relay(Box<RelayJob<'a>>),
}

/// What a route's handler runs with.
pub struct RouteCall<'a, 'r> {
    pub lane: &'r Lane,
    /// The snapshot's TLS client settings.
    pub tls_clients: &'r TlsClients,
    pub head: &'r RequestHead,
    pub keep_alive: bool,
    /// The consumer the `rewrite` phase identified.
    pub consumer: Option<&'a Consumer>,
}

impl CompiledRoute {
    /// Answers the request (the caller boxes this future: an idle
    /// keep-alive connection then holds only its small loop, not the
    /// largest handler's state), or hands back the stream to relay.
    pub async fn handle<'a>(
        &'a self,
        call: RouteCall<'a, '_>,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
    ) -> Handled<'a> {
        let head = call.head;
        let spec = match (&self.handler, &self.ai_bypass) {
            (Handler::Upstream(spec), _) => spec,
            // `ai-proxy-multi`'s `_meta.filter` does not hold: the route's
            // upstream answers.
            (Handler::Ai(_), Some(spec)) if !self.ai_runs_for(head, ctx) => spec,
            (Handler::Ai(plugin), _) => {
                let consumer = call.consumer.map(|c| &c.ai);
                let in_force = self.ai_plugins.in_force(consumer, head, ctx);
                let ai = Call {
                    lane: call.lane,
                    tls_clients: call.tls_clients,
                    plugin,
                    head,
                    keep_alive: call.keep_alive,
                };
                let handled = crate::plugins::ai_proxy_multi::handler::handle(ai, c, ctx, in_force);
                return match handled.await {
                    AiHandled::Done(keep) => Handled::Done(keep),
                    AiHandled::Stream(job) => Handled::Stream(job),
                };
            }
        };
        let (lane, tls) = (call.lane, call.tls_clients);
        match crate::proxy::forward(lane, tls, spec, c, head, ctx, call.keep_alive).await {
            Forwarded::Done(keep) => Handled::Done(keep),
            Forwarded::Relay(job) => Handled::Relay(job),
        }
    }

    /// Whether ai-proxy-multi answers this request (metrics count it as
    /// an active LLM connection).
    pub fn serves_llm(&self, head: &RequestHead, ctx: &RequestCtx) -> bool {
        matches!(self.handler, Handler::Ai(_))
            && (self.ai_bypass.is_none() || self.ai_runs_for(head, ctx))
    }

    fn ai_runs_for(&self, head: &RequestHead, ctx: &RequestCtx) -> bool {
        self.plugins
            .ai_proxy()
            .is_some_and(|(_, meta)| meta.runs_for(head, ctx))
    }
}

//! A plain answer's long body (chunked, or until the upstream closes: an
//! event stream) relayed by the connection loop once forwarding's own
//! state is freed, and what a finished relay leaves behind (the log
//! fields, the upstream connection back to its pool).

use crate::exchange::ctx::RequestCtx;
use crate::exchange::relay::{self, RelayError, Relayed};
use crate::exchange::ClientConn;
use crate::lane::Lane;
use crate::net;
use crate::upstream::spec::UpstreamSpec;
use crate::upstream::UpstreamConn;

/// How an answer leaves the two connections.
pub(super) struct Ending {
    pub(super) keep: bool,
    pub(super) upstream_keep: bool,
}

/// What a finished relay leaves: the bytes sent logged, the upstream
/// connection back to the pool when it ended exactly at the answer's end;
/// whether the client connection stays open.
pub(super) fn settle(
    lane: &Lane,
    spec: &UpstreamSpec,
    ctx: &mut RequestCtx,
    up: UpstreamConn,
    answer: &Ending,
    relayed: Result<Relayed, RelayError>,
) -> bool {
    match relayed {
        Ok(r) => {
            ctx.bytes_sent = r.bytes;
            if r.reusable && answer.upstream_keep && spec.keepalive.enabled {
                lane.pool.put(up, &spec.keepalive);
            }
            answer.keep
        }
        Err(RelayError::Upstream(e)) => {
            tracing::debug!("upstream failed mid-response: {e}");
            false
        }
        Err(RelayError::Client) => false,
    }
}

/// An answer whose body may take long (chunked, or until the upstream
/// closes), its head in the client's write buffer: relayed by the
/// connection loop after forwarding's state (the request body, the plan,
/// the attempt) is freed, so an open event stream holds only this.
pub struct RelayJob<'s> {
    pub(super) up: UpstreamConn,
    pub(super) spec: &'s UpstreamSpec,
    pub(super) framing: relay::Framing,
    pub(super) ending: Ending,
    pub(super) sent_at: std::time::Instant,
}

impl RelayJob<'_> {
    /// Sends the head and relays the body while the client is watched for
    /// leaving; whether the client connection stays open.
    pub async fn run(
        mut self: Box<Self>,
        lane: &Lane,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
    ) -> bool {
        let relayed = {
            let ClientConn {
                io,
                ubuf,
                wbuf,
                watch,
                raw_fd,
                tls,
                ..
            } = c;
            let ends = relay::Ends {
                up: &mut self.up.io,
                client: io,
                ubuf,
                wbuf,
            };
            let timeouts = relay::Timeouts {
                read: self.spec.read_timeout,
                send: lane.gateway.timeouts.send,
            };
            let capture = ctx.response_body.as_deref_mut();
            let work = std::pin::pin!(relay::relay_body(ends, self.framing, timeouts, capture));
            net::watch::unless_client_leaves(work, watch, *raw_fd, *tls)
                .await
                .unwrap_or(Err(RelayError::Client))
        };
        ctx.upstream_response_time = Some(self.sent_at.elapsed());
        let RelayJob {
            up, spec, ending, ..
        } = *self;
        settle(lane, spec, ctx, up, &ending, relayed)
    }
}

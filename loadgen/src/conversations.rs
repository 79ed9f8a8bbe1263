//! Conversations across accounts, for `loadgen fallback`: clients hold
//! OpenAI Responses API conversations — chained by `previous_response_id`,
//! or kept by the Conversations API (`conversation`), half each — through
//! a route balancing two accounts (mock-llm instances, which store their
//! responses as accounts do). Every follow-up must be answered by the
//! account that holds its conversation, at the first attempt, whichever
//! gateway worker a fresh connection lands on; when that account fails,
//! the follow-up must fail visibly (502 naming it), never be answered by
//! an account that lacks the conversation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mock_llm::client::{Conn, Response};
use serde_json::{json, Value};

/// The route `loadgen fallback` configures for conversations.
pub const PATH: &str = "/accounts/v1/responses";
/// Its Conversations API path.
pub const CONVERSATIONS: &str = "/accounts/v1/conversations";

/// How a conversation keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Each turn names the previous response (`previous_response_id`).
    Chain,
    /// A Conversations API conversation each turn names (`conversation`).
    Conversation,
}

/// Follow-ups per conversation.
const TURNS: usize = 3;

/// What conversations observed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub conversations: u64,
    pub follow_ups: u64,
    /// New conversations by the account that answered them.
    pub started_on: BTreeMap<String, u64>,
    /// Follow-ups answered by another account than their conversation's.
    pub elsewhere: u64,
    /// Follow-ups that took more than one attempt.
    pub retried: u64,
    /// Failures by what happened (`start 503`, `follow-up 502`, …).
    pub failed: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.conversations += o.conversations;
        self.follow_ups += o.follow_ups;
        self.elsewhere += o.elsewhere;
        self.retried += o.retried;
        for (k, v) in &o.started_on {
            *self.started_on.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_default() += v;
        }
    }
}

/// One conversation's state: what the next turn names (its last response,
/// or the conversation) and the account holding it.
#[derive(Debug, Clone)]
pub struct Thread {
    pub last: String,
    pub holder: String,
    pub style: Style,
}

fn ask(named: Option<(&str, Style)>, stream: bool) -> String {
    let mut v = json!({"model": "gpt-5-mini", "input": "What is 1+1?", "stream": stream});
    match named {
        Some((id, Style::Chain)) => v["previous_response_id"] = json!(id),
        Some((id, Style::Conversation)) => v["conversation"] = json!(id),
        None => {}
    }
    v.to_string()
}

/// The response id of a JSON answer or of an event stream's first event.
fn response_id(r: &Response) -> Option<String> {
    let text = r.text();
    let json = match text.split_once("\ndata: ") {
        Some((_, rest)) => rest.split("\n\n").next()?.to_owned(),
        None => text,
    };
    let v: Value = serde_json::from_str(&json).ok()?;
    v.get("response").unwrap_or(&v)["id"]
        .as_str()
        .map(str::to_owned)
}

/// Starts a conversation (a first response, or a Conversations API
/// conversation); `None` (counted) if it failed.
pub fn start(addr: SocketAddr, style: Style, t: &mut Tally) -> Option<Thread> {
    let r = match style {
        Style::Chain => Conn::connect(addr).post_json(PATH, &ask(None, false)),
        Style::Conversation => Conn::connect(addr).post_json(CONVERSATIONS, "{}"),
    };
    if r.status != 200 {
        *t.failed.entry(format!("start {}", r.status)).or_default() += 1;
        return None;
    }
    let holder = r.header("x-ringway-instance").unwrap_or("?").to_owned();
    let last = response_id(&r)?;
    t.conversations += 1;
    *t.started_on.entry(holder.clone()).or_default() += 1;
    Some(Thread {
        last,
        holder,
        style,
    })
}

/// One follow-up on a fresh connection (any worker); whether it went on.
pub fn follow_up(addr: SocketAddr, th: &mut Thread, stream: bool, t: &mut Tally) -> bool {
    let r = Conn::connect(addr).post_json(PATH, &ask(Some((&th.last, th.style)), stream));
    t.follow_ups += 1;
    let by = r.header("x-ringway-instance").unwrap_or("?");
    if r.status != 200 {
        *t.failed
            .entry(format!("follow-up {} (holder {})", r.status, th.holder))
            .or_default() += 1;
        return false;
    }
    if by != th.holder {
        t.elsewhere += 1;
    }
    if r.header("x-ringway-attempts") != Some("1") {
        t.retried += 1;
    }
    match response_id(&r) {
        Some(id) => {
            if th.style == Style::Chain {
                th.last = id;
            }
            true
        }
        None => {
            *t.failed
                .entry("follow-up without an id".into())
                .or_default() += 1;
            false
        }
    }
}

/// `clients` threads each hold conversations (a start, then [`TURNS`]
/// follow-ups, JSON and streamed in turn; every other thread through the
/// Conversations API) until `for_how_long` has passed.
pub fn converse(addr: SocketAddr, clients: usize, for_how_long: Duration) -> Tally {
    let until = Instant::now() + for_how_long;
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|n| {
                let style = if n % 2 == 0 {
                    Style::Chain
                } else {
                    Style::Conversation
                };
                s.spawn(move || {
                    let mut t = Tally::default();
                    while Instant::now() < until {
                        let Some(mut th) = start(addr, style, &mut t) else {
                            continue;
                        };
                        for turn in 0..TURNS {
                            if !follow_up(addr, &mut th, turn % 2 == 1, &mut t) {
                                break;
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = Tally::default();
    for t in &tallies {
        total.add(t);
    }
    total
}

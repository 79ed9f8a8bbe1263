//! ringway: an LLM edge gateway on a thread-per-core io_uring engine.
//!
//! # Where things live
//!
//! One folder per concern, in layers: a folder imports only from the
//! folders above it in this table (`tests/layers.rs` fails the build
//! otherwise), so each can be read knowing only what lies above it.
//!
//! | layer | folder | owns |
//! |---|---|---|
//! | 1 | [`supervise`] | panics caught, counted and the part restarted; shutdown signals ([`supervise::signal`]) |
//! | 1 | [`balance`] | weighted round robin and consistent hashing |
//! | 1 | [`sse`] | the server-sent-events codec |
//! | 2 | [`timer`] | the per-thread deadline wheel, the process clock ([`timer::now_ms`]) |
//! | 3 | [`net`] | client and upstream byte streams (TCP, TLS), buffered reads and writes, the client-gone watch, the DNS switch |
//! | 4 | [`config`] | the file model: YAML/JSON, `${VAR}`, ADC → APISIX resources, APISIX's standalone document ([`config::standalone`]), field paths and errors, every number's bounds |
//! | 5 | [`http`] | the HTTP/1.1 codec (request and response heads, chunked, writing), variables and `vars` expressions |
//! | 6 | [`wire`] | LLM wire formats, sans IO: body scan and splice, OpenAI ⇄ Anthropic ⇄ Responses conversion, streams, usage, answer text |
//! | 7 | [`exchange`] | one request's exchange: its context, the client connection, body reading, replies, `ProxyError`, reading and relaying an answer |
//! | 8 | [`upstream`] | endpoints and DNS, connection pools, TLS clients, one-shot calls, plain upstream specs; one attempt's step, shared by plain forwarding and `ai-proxy-multi` — connect pooled or fresh, send, take the answer, the one stale-connection retry ([`upstream::attempt`]) |
//! | 9 | [`lane`] | what one core's handlers share: settings, head limits, pool, round-robin counters, busy polling |
//! | 10 | [`observe`] | request counters, the access log, logger entries, redaction |
//! | 11 | [`redis`] | the Redis client that shares budgets across nodes, its outage detection |
//! | 12 | [`providers`] | provider endpoints, auth, GCP tokens |
//! | 13 | [`health`] | instance health state, active-check specs, the prober thread |
//! | 14 | [`loggers`] | logger sinks (HTTP, Kafka): batching, retries, the sending threads |
//! | 15 | [`router`] | matching a request to a route (host, URI, method, `vars`) |
//! | 16 | [`plugins`] | every plugin, its phases ([`plugins::phase`]), the registry, the chains that run them, consumers, state kept across reloads |
//! | 17 | [`proxy`] | plain HTTP forwarding (routes with an `upstream`) |
//! | 18 | [`snapshot`] | compiling resources into the immutable snapshot workers serve from; its cell; a route's handler ([`snapshot::handler`]) |
//! | 19 | [`source`] | where the configuration comes from: the file (re-read on `SIGHUP` and change), the Admin API's changes kept beside it, API-driven standalone's accepted document ([`source::document`]), etcd ([`source::etcd`]); every change published through it |
//! | 20 | [`admin`], [`status`] | operators' listeners: the Admin API (`/apisix/admin/configs` in API-driven standalone: [`admin::configs`]); `/metrics`; the Status API (`/status`, `/status/ready`: liveness and readiness) |
//! | 21 | [`server`] | the process: listeners, workers, the connection loop |
//!
//! # The life of a request
//!
//! | phase | file |
//! |---|---|
//! | accept, per-core runtime | `server/worker.rs` (`accept_loop`) |
//! | read the head, keep-alive, pipelining | `server/conn.rs` (`serve`, `read_head`) |
//! | route | `router/mod.rs`, called from `server/conn.rs` (`route_and_run`) |
//! | the phases, what runs when | `plugins/phase.rs` (the `Phases` trait and its table), `plugins/registry.rs` (one line per plugin) |
//! | rewrite phase (global rules, then the route's; `key-auth`) | `plugins/chain.rs` (`PluginChain::rewrite`), `plugins/key_auth/` |
//! | the route's handler (plain or AI; the AI-path plugins in force) | `snapshot/handler.rs` (`CompiledRoute::handle`), `plugins/in_force.rs` (`AiChain::in_force`) |
//! | plain upstream: plan, try, classify, next; relay | `proxy/mod.rs` (`forward`, `Step`, `Forwarding`), `upstream/attempt.rs` (`run`), `proxy/head.rs`, `exchange/relay.rs` |
//! | AI route: classify, read and check the body | `plugins/ai_proxy_multi/handler.rs` (`handle`), `request.rs` |
//! | AI route: access, before_attempt, header_filter, on_usage (`ai-rate-limiting`'s budgets) | `plugins/in_force.rs` (`InForce`), run from `handler.rs` (`handle`), `walk.rs` (`budget`), `respond.rs` (`ringway_headers`, `on_usage`, `after_answer`); the budgets' side: `plugins/ai_rate_limiting/phases.rs` |
//! | AI route: pick instances (priority, weight, health, cooldowns) | `plugins/ai_proxy_multi/select.rs`, `walk.rs` (`Walk::next_candidate`), `health/state.rs` |
//! | AI route: build the upstream body (options, conversion) | `wire/` (`build_request`), `plugins/ai_proxy_multi/handler.rs` |
//! | AI route: one attempt (token, connect, send, read the head) | `plugins/ai_proxy_multi/attempt.rs` (`bearer`, `send`), `upstream/attempt.rs` (`run`, `Buffered`), `handler.rs` (`walk`) |
//! | AI route: classify the outcome, fall back or answer (JSON) | `plugins/ai_proxy_multi/outcome.rs` (`Failure::falls_back`), `handler.rs` (`walk`, `finish`), `walk.rs` (`judge`, `Walk::failed`), `respond.rs`, `replies.rs` |
//! | AI route: stream (SSE relay, TTFT, usage) | `plugins/ai_proxy_multi/stream.rs`, `wire/stream/` |
//! | stored Responses / conversations | `plugins/ai_proxy_multi/stored.rs`, `stored/path.rs`, `follow_up.rs`, `affinity.rs` |
//! | the gateway's own errors | `exchange/reply.rs`, `plugins/ai_proxy_multi/replies.rs` |
//! | log phase (access log, logger plugins) | `server/worker.rs` (`log_request`: the access log, then `PluginChain::log` of the global rules and the route), `observe/`, `plugins/logger.rs`, `loggers/` |
//!
//! Off the request path: configuration enters through `config/`,
//! `snapshot/` and `source/` (file and its reloads, Admin API in `admin/`), health probes run on their
//! own thread (`health/prober.rs`), metrics and the Status API are served by
//! `status/` on threads of their own.

pub mod admin;
pub mod balance;
pub mod config;
pub mod exchange;
pub mod health;
pub mod http;
pub mod lane;
pub mod loggers;
pub mod net;
pub mod observe;
pub mod plugins;
pub mod providers;
pub mod proxy;
pub mod redis;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod sse;
pub mod status;
pub mod supervise;
pub mod timer;
pub mod upstream;
pub mod wire;

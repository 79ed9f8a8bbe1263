//! loadgen: drives LLM gateways (or mock-llm directly) and records TTFT,
//! inter-token latency and total latency in HDR histograms; checks
//! fallback correctness under scripted chaos; compares targets side by
//! side in interleaved rounds; regenerates the benchmark suite.
//!
//! [`client`] is one keep-alive connection, [`workload`] renders requests,
//! [`run`] drives closed or open loops ([`schedule`] keeps open-loop
//! arrivals honest), [`stats`] holds histograms and summaries; [`soak`]
//! runs the chaos soak.

pub mod cli;
pub mod client;
pub mod compare;
pub mod conversations;
pub mod fallback;
pub mod pace;
pub mod plot;
pub mod procs;
pub mod report;
pub mod run;
pub mod schedule;
pub mod soak;
pub mod stats;
pub mod suite;
pub mod workload;

//! loadgen: drives LLM gateways and records TTFT, latency and fallback correctness.

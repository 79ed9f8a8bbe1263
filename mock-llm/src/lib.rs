//! mock-llm: an OpenAI/Anthropic-compatible upstream with scripted latency and chaos.

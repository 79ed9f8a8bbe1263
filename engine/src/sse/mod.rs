//! Incremental server-sent-events parsing (sans-IO): bytes in, complete
//! events out, whatever the read boundaries. Used by the AI relay to find
//! the first token and the usage report in LLM streams.

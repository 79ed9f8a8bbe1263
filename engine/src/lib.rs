//! ringway: an LLM edge gateway on a thread-per-core io_uring engine.

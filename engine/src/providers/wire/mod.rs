//! Wire formats spoken by LLM APIs and conversions between them.

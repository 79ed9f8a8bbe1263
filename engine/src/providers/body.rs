//! Request-body editing without re-serialising: find the top-level keys of
//! a JSON object and splice new values into the original bytes.

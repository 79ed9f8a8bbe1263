//! The raw HTTP/1.1 test client lives in mock-llm (shared by both test suites).

pub use mock_llm::client::*;

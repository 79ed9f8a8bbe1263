//! Protocol errors raised by the codec, each mapped to the status code the
//! server answers with before closing the connection.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    #[error("request head is larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("request has more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("transfer coding is not supported: only chunked is implemented")]
    UnsupportedTransferCoding,
    #[error("unsupported expectation")]
    UnsupportedExpectation,
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl HttpError {
    /// The status code a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::Malformed(_) | HttpError::BadChunk(_) => 400,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::UnsupportedExpectation => 417,
            HttpError::UnsupportedVersion => 505,
        }
    }
}

//! TLS termination: builds the rustls server config from the PEM
//! certificate chain and key named in `gateway.tls`.

use std::sync::Arc;

use monoio_rustls::TlsAcceptor;
use rustls::ServerConfig;

use crate::config::gateway::TlsSettings;
use crate::config::{ConfigError, FieldPath};

/// Loads the certificate and key and returns an acceptor for all workers.
pub fn acceptor(tls: &TlsSettings) -> Result<TlsAcceptor, ConfigError> {
    let at = FieldPath::root().field("gateway").field("tls");
    let cert_pem = std::fs::read(&tls.cert).map_err(|e| {
        at.field("cert")
            .error(format!("cannot read `{}`: {e}", tls.cert.display()))
    })?;
    let key_pem = std::fs::read(&tls.key).map_err(|e| {
        at.field("key")
            .error(format!("cannot read `{}`: {e}", tls.key.display()))
    })?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at.field("cert").error(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(at
            .field("cert")
            .error(format!("no certificate found in `{}`", tls.cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| at.field("key").error(format!("bad PEM: {e}")))?
        .ok_or_else(|| {
            at.field("key")
                .error(format!("no private key found in `{}`", tls.key.display()))
        })?;
    let mut config = ServerConfig::builder_with_provider(crate::upstream::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| at.error(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            at.error(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

//! rustls client configurations for `https` upstreams: one that verifies
//! certificates against the bundled web PKI roots plus any
//! `gateway.ssl_trusted_certificate` bundle, and one for `ssl_verify: false`
//! that accepts any certificate (still encrypting). Built once at start-up.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::ConfigError;

#[derive(Clone)]
pub struct TlsClients {
    pub verify: Arc<ClientConfig>,
    pub insecure: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClients")
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsClients {
    pub fn new(extra_ca: Option<&Path>) -> Result<TlsClients, ConfigError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let at = crate::config::FieldPath::root()
                .field("gateway")
                .field("ssl_trusted_certificate");
            let pem = std::fs::read(path)
                .map_err(|e| at.error(format!("cannot read `{}`: {e}", path.display())))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|e| at.error(format!("bad PEM in `{}`: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    at.error(format!("bad certificate in `{}`: {e}", path.display()))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(at.error(format!("no certificates found in `{}`", path.display())));
            }
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("gateway", format!("TLS setup failed: {e}")))?;
        let mut verify = builder.with_root_certificates(roots).with_no_client_auth();
        verify.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut insecure = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("gateway", format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth();
        insecure.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClients {
            verify: Arc::new(verify),
            insecure: Arc::new(insecure),
        })
    }

    pub fn config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify {
            self.verify.clone()
        } else {
            self.insecure.clone()
        }
    }
}

/// `ssl_verify: false`: accept any certificate, but still check the
/// handshake signatures so the session is at least encrypted to the holder
/// of the presented key.
#[derive(Debug)]
pub(crate) struct AcceptAnyCert(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

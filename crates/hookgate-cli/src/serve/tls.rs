//! HTTPS for `hookgate serve`: rustls with the aws-lc-rs provider (rustls' default, chosen
//! explicitly so that no other provider enabled elsewhere in a build can change it).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

use crate::error::CliError;

/// A TLS acceptor serving the certificate chain in `cert` with the private key in `key`
/// (PEM files), speaking HTTP/1.1.
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not match the certificate.
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, CliError> {
    let certs = crate::client::read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        CliError::new(format!(
            "cannot read a PEM private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::new(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            CliError::new(format!(
                "the TLS certificate {} and its key do not work together: {e}",
                cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

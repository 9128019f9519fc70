//! Mutual TLS under the cluster CA.
//!
//! `shoal init` makes one [`ClusterCa`], a node certificate per node
//! ([`ClusterCa::issue_node_cert`]) and a client certificate ([`ClusterCa::issue_client_cert`]),
//! all as PEM strings. At run time a node or client loads its [`TlsIdentity`] (CA certificate,
//! own certificate, own key) and builds rustls configurations from it:
//!
//! - [`server_config`]: one server config per endpoint, offering both ALPN protocols
//!   ([`ALPN_PEER`], [`ALPN_CLIENT`]) and requiring a client certificate signed by the cluster CA
//!   (`WebPkiClientVerifier`); a peer or client without one is refused in the handshake.
//! - [`peer_client_config`]: what a node uses to dial another node (ALPN [`ALPN_PEER`]).
//! - [`client_client_config`]: what a client uses to reach any node (ALPN [`ALPN_CLIENT`]).
//!
//! Node certificates carry the DNS names `node-<id>` ([`node_server_name`]) and `shoal-node`
//! ([`NODE_SERVER_NAME`]) plus the node's host names or IPs, and both the server-auth and
//! client-auth key purposes. A dialing node asks for `node-<id>`, so rustls checks it reached
//! the node it meant; the accepting node checks the dialer's certificate against the
//! `node-<id>` it claims ([`verify_node_certificate`]). Client certificates have the common name
//! and DNS name `client` and only the client-auth purpose: they cannot pass as a node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

/// ALPN protocol of node-to-node traffic.
pub const ALPN_PEER: &[u8] = b"shoal-peer/1";
/// ALPN protocol of client traffic.
pub const ALPN_CLIENT: &[u8] = b"shoal-client/1";
/// DNS name every node certificate carries; clients verify nodes against it.
pub const NODE_SERVER_NAME: &str = "shoal-node";
/// Common name (and DNS name) of client certificates.
pub const CLIENT_COMMON_NAME: &str = "client";

/// The DNS name a node certificate carries for node `node_id`: `node-<id>`.
pub fn node_server_name(node_id: u64) -> String {
    format!("node-{node_id}")
}

/// Whether `host` is a name the certificates use as an identity: `node-<digits>` or `client`
/// (compared ignoring ASCII case, as DNS names are).
fn is_reserved_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == CLIENT_COMMON_NAME
        || host
            .strip_prefix("node-")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// What went wrong while making, loading or using TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A PEM document could not be parsed.
    #[error("cannot parse {what} as PEM: {message}")]
    Pem {
        /// What was being parsed (with its file when known).
        what: String,
        /// The parser's message.
        message: String,
    },
    /// A PEM document held no item of the expected kind.
    #[error("{what} contains no {kind}")]
    Missing {
        /// What was being parsed (with its file when known).
        what: String,
        /// The kind of item expected (certificate, private key).
        kind: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("rustls refused the {what}: {source}")]
    Rustls {
        /// What was being configured.
        what: &'static str,
        /// rustls' error.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA.
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("quinn refused the tls configuration: {0}")]
    Quic(String),
    /// A peer's certificate is not the node certificate it claims to be.
    #[error("certificate is not a node certificate for node {node_id}: {message}")]
    NotNodeCertificate {
        /// The node id claimed.
        node_id: u64,
        /// Why it failed.
        message: String,
    },
}

/// Installs ring as the process-wide rustls crypto provider, once.
///
/// Idempotent and safe to call from many threads; if another provider was installed first it
/// is left in place (every config this crate builds names ring explicitly anyway).
pub fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is already installed: nothing to do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificatePem {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertificatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys.
        f.debug_struct("CertificatePem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The cluster certificate authority: signs node and client certificates.
pub struct ClusterCa {
    pem: CertificatePem,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.pem.cert_pem)
            .finish()
    }
}

fn generate_key(what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::generate().map_err(|source| TlsError::Generate {
        what: format!("{what} key"),
        source,
    })
}

impl ClusterCa {
    /// Makes a fresh CA whose common name is `Shoal cluster CA <cluster_name>`.
    pub fn generate(cluster_name: &str) -> Result<Self, TlsError> {
        let key = generate_key("CA")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("Shoal cluster CA {cluster_name}"),
        );
        name.push(DnType::OrganizationName, "shoal");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "CA certificate".into(),
                source,
            })?;
        let pem = CertificatePem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Reloads a CA from its certificate and key PEM (as written by `shoal init`), to sign more
    /// certificates later (a node added to the cluster).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::Pem {
            what: "CA key".into(),
            message: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| TlsError::Pem {
            what: "CA certificate".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            pem: CertificatePem {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pem.cert_pem
    }

    /// The CA private key, PEM. Keep it out of node data dirs when you can.
    pub fn key_pem(&self) -> &str {
        &self.pem.key_pem
    }

    /// Issues the certificate of node `node_id`, valid for `node-<id>`, `shoal-node` and each of
    /// `hosts` (IP addresses become IP SANs, anything else a DNS name).
    pub fn issue_node_cert(
        &self,
        node_id: u64,
        hosts: &[String],
    ) -> Result<CertificatePem, TlsError> {
        let what = format!("certificate of node {node_id}");
        let mut names = vec![node_server_name(node_id), NODE_SERVER_NAME.to_owned()];
        for host in hosts {
            // Peer identity is the name `node-<id>`: a host that is another node's name (or
            // the clients' name) would let this node pass as that node.
            if is_reserved_name(host) {
                return Err(TlsError::NotNodeCertificate {
                    node_id,
                    message: format!(
                        "host {host:?} is reserved for node identities and client certificates"
                    ),
                });
            }
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let mut params = CertificateParams::new(names).map_err(|source| TlsError::Generate {
            what: what.clone(),
            source,
        })?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node_server_name(node_id));
        name.push(DnType::OrganizationName, "shoal");
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, &what)
    }

    /// Issues a client certificate with common name and DNS name `client`.
    pub fn issue_client_cert(&self) -> Result<CertificatePem, TlsError> {
        let what = "client certificate";
        let mut params =
            CertificateParams::new(vec![CLIENT_COMMON_NAME.to_owned()]).map_err(|source| {
                TlsError::Generate {
                    what: what.into(),
                    source,
                }
            })?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CLIENT_COMMON_NAME);
        name.push(DnType::OrganizationName, "shoal");
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, what)
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<CertificatePem, TlsError> {
        let key = generate_key(what)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| TlsError::Generate {
                what: what.to_owned(),
                source,
            })?;
        Ok(CertificatePem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The TLS material of one node or client: the cluster CA certificate, its own certificate
/// chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            what: what.to_owned(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

fn parse_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            what: what.to_owned(),
            kind: "private key",
        },
        other => TlsError::Pem {
            what: what.to_owned(),
            message: other.to_string(),
        },
    })
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

impl TlsIdentity {
    /// Builds an identity from PEM strings: the CA certificate, the own certificate (chain) and
    /// the own private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let mut ca = parse_certs(ca_pem, "CA certificate")?;
        let chain = parse_certs(cert_pem, "certificate")?;
        let key = parse_key(key_pem, "private key")?;
        Ok(Self {
            ca: ca.swap_remove(0),
            chain,
            key,
        })
    }

    /// Builds an identity from a [`CertificatePem`] issued by `ca_pem`'s CA.
    pub fn from_issued(ca_pem: &str, issued: &CertificatePem) -> Result<Self, TlsError> {
        Self::from_pem(ca_pem, &issued.cert_pem, &issued.key_pem)
    }

    /// Loads an identity from PEM files; errors name the file.
    pub fn from_files(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let mut ca = parse_certs(
            &read_file(ca_path)?,
            &format!("CA certificate {}", ca_path.display()),
        )?;
        let chain = parse_certs(
            &read_file(cert_path)?,
            &format!("certificate {}", cert_path.display()),
        )?;
        let key = parse_key(
            &read_file(key_path)?,
            &format!("private key {}", key_path.display()),
        )?;
        Ok(Self {
            ca: ca.swap_remove(0),
            chain,
            key,
        })
    }

    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The own certificate (leaf first).
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|source| TlsError::Rustls {
                what: "CA certificate",
                source,
            })?;
        Ok(Arc::new(roots))
    }
}

/// The server side of an endpoint: offers [`ALPN_PEER`] and [`ALPN_CLIENT`], presents the
/// node's certificate, and requires a client certificate signed by the cluster CA.
pub fn server_config(identity: &TlsIdentity) -> Result<rustls::ServerConfig, TlsError> {
    ensure_crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(identity.roots()?, provider()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "node certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    Ok(config)
}

fn client_side(identity: &TlsIdentity, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    ensure_crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_root_certificates(identity.roots()?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// What a node uses to dial another node: the cluster CA as the only root, the node's own
/// certificate as client certificate, ALPN [`ALPN_PEER`]. Dial with server name
/// [`node_server_name`] of the node you mean to reach.
pub fn peer_client_config(identity: &TlsIdentity) -> Result<rustls::ClientConfig, TlsError> {
    client_side(identity, ALPN_PEER)
}

/// What a client uses to reach a node: the cluster CA as the only root, the client
/// certificate, ALPN [`ALPN_CLIENT`]. Dial with server name [`NODE_SERVER_NAME`].
pub fn client_client_config(identity: &TlsIdentity) -> Result<rustls::ClientConfig, TlsError> {
    client_side(identity, ALPN_CLIENT)
}

/// Wraps a rustls server config for quinn.
pub fn quic_server_config(config: rustls::ServerConfig) -> Result<quinn::ServerConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// Wraps a rustls client config for quinn.
pub fn quic_client_config(config: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Checks that `cert` (already verified against the cluster CA by the TLS handshake) is the
/// node certificate of `node_id`, i.e. that it is valid for the name `node-<id>`.
pub fn verify_node_certificate(cert: &CertificateDer<'_>, node_id: u64) -> Result<(), TlsError> {
    let fail = |message: String| TlsError::NotNodeCertificate { node_id, message };
    let parsed =
        rustls::server::ParsedCertificate::try_from(cert).map_err(|e| fail(e.to_string()))?;
    let name = ServerName::try_from(node_server_name(node_id)).map_err(|e| fail(e.to_string()))?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_material_loads_and_builds_configs() {
        let ca = ClusterCa::generate("test").unwrap();
        let node = ca
            .issue_node_cert(3, &["127.0.0.1".into(), "db3.example".into()])
            .unwrap();
        let client = ca.issue_client_cert().unwrap();
        let node_identity = TlsIdentity::from_issued(ca.cert_pem(), &node).unwrap();
        let client_identity = TlsIdentity::from_issued(ca.cert_pem(), &client).unwrap();
        server_config(&node_identity).unwrap();
        peer_client_config(&node_identity).unwrap();
        client_client_config(&client_identity).unwrap();
        verify_node_certificate(&node_identity.cert_chain()[0], 3).unwrap();
        assert!(verify_node_certificate(&node_identity.cert_chain()[0], 4).is_err());
        assert!(verify_node_certificate(&client_identity.cert_chain()[0], 3).is_err());
        assert!(!format!("{node:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_node_certificate_cannot_carry_another_identity() {
        let ca = ClusterCa::generate("names").unwrap();
        for host in ["node-2", "NODE-2", "node-1", "client", "Client"] {
            let err = ca.issue_node_cert(1, &[host.to_owned()]).unwrap_err();
            assert!(err.to_string().contains("reserved"), "{host}: {err}");
        }
        // Ordinary host names and addresses, and the shared node name, are fine.
        let issued = ca
            .issue_node_cert(
                1,
                &[
                    "node-a.example".into(),
                    "127.0.0.1".into(),
                    NODE_SERVER_NAME.into(),
                ],
            )
            .unwrap();
        let identity = TlsIdentity::from_issued(ca.cert_pem(), &issued).unwrap();
        verify_node_certificate(&identity.cert_chain()[0], 1).unwrap();
        assert!(verify_node_certificate(&identity.cert_chain()[0], 2).is_err());
    }

    #[test]
    fn ca_reloads_from_pem_and_signs_verifiable_certs() {
        let ca = ClusterCa::generate("reload").unwrap();
        let reloaded = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let node = reloaded.issue_node_cert(9, &[]).unwrap();
        let identity = TlsIdentity::from_issued(ca.cert_pem(), &node).unwrap();
        // The reloaded CA's certificates pass a verifier built from the original CA.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(identity.roots().unwrap(), provider())
                .build()
                .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_client_cert(&identity.cert_chain()[0], &[], now)
            .unwrap();
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = TlsIdentity::from_pem("not pem", "nope", "nope").unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
        let ca = ClusterCa::generate("x").unwrap();
        let err = TlsIdentity::from_pem(ca.cert_pem(), ca.cert_pem(), "").unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TlsIdentity::from_files(&missing, &missing, &missing).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn crypto_provider_install_is_idempotent() {
        ensure_crypto_provider();
        ensure_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}

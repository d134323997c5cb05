//! TLS on the gRPC port and the console's (rustls with ring): the certificate and key from
//! `[server.tls]`, and with `client_ca_file` client certificates required (mTLS). Connections
//! are accepted here and handed on once their handshake is done, so a reload (SIGHUP) swaps the
//! configuration new connections get while open ones keep theirs.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use leadscore_config::TlsConfig;
use leadscore_store::sync::{Rank, RwLock};

/// A handshake that takes longer is dropped, so a client that never finishes one holds nothing.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a port speaks inside TLS, as ALPN names it to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// gRPC: HTTP/2.
    Grpc,
    /// The console: HTTP/1.1.
    Http1,
}

#[derive(Debug)]
pub struct Tls {
    files: TlsConfig,
    /// What the next connection's handshake uses, for each protocol.
    current: RwLock<Configs>,
}

#[derive(Debug)]
struct Configs {
    grpc: Arc<ServerConfig>,
    http1: Arc<ServerConfig>,
}

impl Configs {
    fn read(files: &TlsConfig) -> Result<Self, String> {
        let base = server_config(files)?;
        let with_alpn = |protocol: &[u8]| {
            let mut config = base.clone();
            config.alpn_protocols = vec![protocol.to_vec()];
            Arc::new(config)
        };
        Ok(Self { grpc: with_alpn(b"h2"), http1: with_alpn(b"http/1.1") })
    }
}

impl Tls {
    /// Reads the configured files; an error names the file and what is wrong with it.
    pub fn load(files: &TlsConfig) -> Result<Self, String> {
        Ok(Self { current: RwLock::new(Rank::Tls, Configs::read(files)?), files: files.clone() })
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let next = Configs::read(&self.files)?;
        *self.current.write() = next;
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        !self.files.client_ca_file.as_os_str().is_empty()
    }

    /// Connections accepted on `listener` whose handshake succeeded. Failed handshakes (a
    /// plaintext client, no client certificate under mTLS) are logged at debug level and
    /// dropped. The accepting ends when the stream is dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        speaks: Speaks,
    ) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = sender.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // gRPC writes small frames; see `server::incoming`.
                let _ = stream.set_nodelay(true);
                let acceptor = TlsAcceptor::from(match speaks {
                    Speaks::Grpc => self.current.read().grpc.clone(),
                    Speaks::Http1 => self.current.read().http1.clone(),
                });
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send(Ok(tls)).await;
                        }
                        Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }
}

fn server_config(files: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = Arc::new(crypto::ring::default_provider());
    let certs = certificates(&files.cert_file, "server.tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|err| format!("server.tls.key_file: {}: no private key read: {err}", files.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("server.tls: {err}"))?;
    let builder = if files.client_ca_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&files.client_ca_file, "server.tls.client_ca_file")? {
            roots.add(cert).map_err(|err| format!("server.tls.client_ca_file: {err}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| format!("server.tls.client_ca_file: {err}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|err| format!("server.tls: the certificate and key do not make a TLS identity: {err}"))
}

fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = |err: &dyn std::fmt::Display| format!("{key}: {}: {err}", path.display());
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(path).map_err(|e| read(&e))?.collect::<Result<_, _>>().map_err(|e| read(&e))?;
    if certs.is_empty() {
        return Err(read(&"no PEM certificate in it"));
    }
    Ok(certs)
}

//! An `https://` upstream, for real: the demo tool server behind a TLS terminator on
//! loopback with a certificate made for this test. Warden reaches it when the upstream's
//! `ca_file` trusts that certificate, and refuses to (the call fails closed, nothing crosses
//! the TLS terminator) when nothing does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use common::env::Env;
use serde_json::json;

/// A TLS terminator for `localhost` forwarding plain TCP to the backend set later; counts
/// the handshakes that succeeded.
struct Terminator {
    addr: SocketAddr,
    backend: Arc<OnceLock<SocketAddr>>,
    handshakes: Arc<AtomicUsize>,
    ca_pem: String,
    _rt: tokio::runtime::Runtime,
}

fn terminator() -> Terminator {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca_pem = key.cert.pem();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let backend: Arc<OnceLock<SocketAddr>> = Arc::default();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (b, h) = (Arc::clone(&backend), Arc::clone(&handshakes));
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, b, h) = (acceptor.clone(), Arc::clone(&b), Arc::clone(&h));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let Some(to) = b.get() else { return };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    Terminator {
        addr,
        backend,
        handshakes,
        ca_pem,
        _rt: rt,
    }
}

#[test]
fn an_https_upstream_is_reached_with_its_ca_file_and_refused_without_one() {
    let tls = terminator();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let port = tls.addr.port();
    let credential = "[upstreams.{name}.credential]\nheader = \"Authorization\"\nprefix = \"Bearer \"\n\
                      secret = { env = \"DEMO_UPSTREAM_TOKEN\" }\n";
    let config = format!(
        "[upstreams.secure]\nurl = \"https://localhost:{port}/crm/mcp\"\nca_file = \"{}\"\n{}\
         [upstreams.untrusted]\nurl = \"https://localhost:{port}/crm/mcp\"\n{}",
        ca.display(),
        credential.replace("{name}", "secure"),
        credential.replace("{name}", "untrusted"),
    );
    let policy = r#"
@id("assistant-over-tls")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"secure/read_contact", Warden::Tool::"untrusted/read_contact"].contains(resource) };
"#;
    let env = Env::start_with(&config, policy);
    let demo: SocketAddr = env
        .demo
        .url("crm")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tls.backend.set(demo).unwrap();
    let before = env.stats().requests("crm");

    let mut s = env.session("assistant", "secure", &["read_contact"], "2026-07-28");
    let out = s.call_tool("read_contact", json!({"id": "c-1"})).unwrap();
    assert!(out.get("result").is_some(), "{out}");
    assert!(tls.handshakes.load(Ordering::SeqCst) >= 1);
    let forwarded = env.stats().requests("crm") - before;
    assert!(forwarded >= 1);

    // The same server without its CA trusted: the handshake fails on Warden's side, the
    // call is refused, and not one request reaches the tool server.
    let handshakes = tls.handshakes.load(Ordering::SeqCst);
    let mut s = env.session("assistant", "untrusted", &["read_contact"], "2026-07-28");
    let out = s.call_tool("read_contact", json!({"id": "c-1"})).unwrap();
    assert_eq!(out["error"]["data"]["reason"], "upstream_failed", "{out}");
    assert_eq!(tls.handshakes.load(Ordering::SeqCst), handshakes);
    assert_eq!(env.stats().requests("crm") - before, forwarded);
}

#[test]
fn a_ca_file_that_is_not_pem_stops_the_server_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&ca, "hello\n").unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[inspection.pinning]\nmode = \"off\"\n[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.secure]\nurl = \"https://localhost:1/mcp\"\n\
             ca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let out = common::warden()
        .args(["serve", "--config"])
        .arg(&config)
        .env("WARDEN_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upstreams.secure") && err.contains("not-a-ca.pem"),
        "{err}"
    );
}

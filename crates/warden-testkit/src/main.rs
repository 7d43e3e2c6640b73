//! `warden-testkit`: runs the demo tool server on its own (for benchmarks and manual tests).
//!
//! ```text
//! warden-testkit [--listen 127.0.0.1:8471] [--json] [--require-authorization VALUE]
//! ```

use std::net::SocketAddr;

use warden_testkit::{DemoOptions, SERVICES, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8471));
    let mut options = DemoOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen needs ADDR"))?;
                listen = v
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--listen {v}: {e}"))?;
            }
            "--json" => options.json_response = true,
            "--require-authorization" => {
                options.require_authorization = Some(
                    args.next()
                        .ok_or_else(|| anyhow::anyhow!("--require-authorization needs VALUE"))?,
                );
            }
            "-h" | "--help" => {
                println!(
                    "warden-testkit: Warden's demo tool server (MCP over Streamable HTTP)\n\n\
                     usage: warden-testkit [--listen ADDR] [--json] [--require-authorization VALUE]\n\n\
                     --listen ADDR                   where to listen (default 127.0.0.1:8471)\n\
                     --json                          answer application/json where possible\n\
                     --require-authorization VALUE   refuse requests without this Authorization header"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}`; see --help"),
        }
    }
    let server = serve(listen, options).await?;
    for s in SERVICES {
        println!("{s:<8} {}", server.url(s));
    }
    println!("stats    http://{}/stats", server.addr);
    tokio::signal::ctrl_c().await?;
    server.stop();
    Ok(())
}

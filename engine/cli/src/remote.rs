//! What the client subcommands (`import`, `report`, `top` …) share: the server to call, the
//! bearer token to call it with, and how they print a band.

use anyhow::Context as _;
use leadscore_proto::tonic::metadata::{Ascii, MetadataValue};
use leadscore_proto::tonic::service::Interceptor;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Request, Status};

#[derive(Clone, Debug, clap::Args)]
pub struct Remote {
    /// The server to call: a URL, or `host:port` for plain HTTP/2.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A bearer token, when the server requires one (`leadscore token new` makes them).
    #[arg(long, env = "LEADSCORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Bearer {
    /// Sends `token`, if any, with every call.
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        let value = token.map(|token| format!("Bearer {token}").parse()).transpose().context("not a valid token")?;
        Ok(Self(value))
    }
}

/// A band as the client commands print it: `sales_ready`, `hot`.
pub fn band_name(band: i32) -> String {
    leadscore_proto::v1::Band::try_from(band)
        .map_or("?", |b| b.as_str_name())
        .trim_start_matches("BAND_")
        .to_lowercase()
}

impl Remote {
    /// A channel to the server and the interceptor that authenticates calls on it.
    pub async fn connect(&self) -> anyhow::Result<(Channel, Bearer)> {
        let bearer = Bearer::new(self.token.as_deref()).context("--token")?;
        // `host:port`, as `cluster status` and the example scripts print a node, means http.
        let url = match self.server.contains("://") {
            true => self.server.clone(),
            false => format!("http://{}", self.server),
        };
        let channel = Channel::from_shared(url)
            .with_context(|| format!("--server: not a URL: {}", self.server))?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.server))?;
        Ok((channel, bearer))
    }
}

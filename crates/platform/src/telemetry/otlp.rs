//! The OTLP/HTTP span exporter and the HTTP client it posts with.
//!
//! The SDK's batch processor exports from a thread of its own, blocking on each export. The
//! client posts with hyper-util's HTTP/1.1 client (already in the build, unlike the exporter's
//! own reqwest 0.13) on a current-thread runtime made on that thread at the first export, so
//! it works whatever runtimes the process runs (the gateway's per-core ones included) and
//! costs nothing until traces are on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};

/// A collector's answer is a small status message; anything larger is cut off.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Failed exports are logged at most this often: a collector that is down must not flood logs.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The span exporter posting protobuf to `url` (`…/v1/traces`).
pub(super) fn exporter(
    url: &str,
    timeout: Duration,
) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(PostOnOwnRuntime::new(timeout))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .build()
        .map_err(|error| anyhow::anyhow!("failed to build the OTLP exporter for {url}: {error}"))
}

/// Posts each export and waits for the answer, on a runtime it owns.
pub(super) struct PostOnOwnRuntime {
    /// Pools no connection: between exports nothing drives the runtime, so an idle pooled
    /// connection could not notice its peer closing it. One connection per batch is cheap.
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    timeout: Duration,
    last_warning: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for PostOnOwnRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostOnOwnRuntime")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostOnOwnRuntime {
    pub(super) fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            runtime: OnceLock::new(),
            timeout,
            last_warning: Mutex::new(None),
        }
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would stall a runtime the process serves requests on.
            return Err("the OTLP client blocks; it must not run on an async runtime".into());
        }
        let runtime = match self.runtime.get() {
            Some(runtime) => runtime,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()?;
                self.runtime.get_or_init(|| runtime)
            }
        };
        let url = request.uri().clone();
        let exchange = async {
            let response = self.client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?;
            Ok::<_, HttpError>(Response::from_parts(parts, body.to_bytes()))
        };
        let answer = runtime
            .block_on(async { tokio::time::timeout(self.timeout, exchange).await })
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout).into()));
        match &answer {
            Ok(response) if !response.status().is_success() => {
                self.warn(
                    &format!("the collector answered {}", response.status()),
                    &url,
                );
            }
            Ok(_) => {}
            Err(error) => self.warn(&error.to_string(), &url),
        }
        answer
    }

    fn warn(&self, error: &str, url: &http::Uri) {
        let Ok(mut last) = self.last_warning.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(%url, error, "failed to export spans; they are dropped (this warning repeats at most once a minute)");
    }
}

impl HttpClient for PostOnOwnRuntime {
    // `async_trait`'s signature, written out (one method is not worth the macro).
    fn send_bytes<'client, 'future>(
        &'client self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'future>>
    where
        'client: 'future,
        Self: 'future,
    {
        // The batch thread blocks on this future; the post blocks in turn on our runtime.
        Box::pin(async move { self.post(request) })
    }
}

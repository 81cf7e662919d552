//! The plain metrics listener of the node and verifier daemons (`--metrics-addr`): HTTP/1
//! on a private scrape network, `GET /metrics` and nothing else, no token. The only HTTP
//! this crate serves; the verifier daemon serves its metrics through it too.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The content type of the metrics' text (OpenMetrics, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// A request whose headers are not in within this long is cut off.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What renders the metrics' text for each scrape.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The metrics listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("--metrics-addr {addr}: {reason}")]
pub struct MetricsListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub reason: String,
}

/// Bind the metrics listener on `addr`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsListenError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MetricsListenError {
            addr,
            reason: e.to_string(),
        })
}

/// Serve `GET /metrics` with `render`'s text on `listener` until `shutdown`; any other
/// method or path is answered 404 (405 for another method on `/metrics`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: RenderMetrics,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let render = render.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let answer = answer(&req, &render);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Errors here are the scraper's (a reset, a timeout): nothing to report.
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
}

fn answer(req: &Request<Incoming>, render: &RenderMetrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, render()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn only_get_metrics_is_served() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let render: RenderMetrics = Arc::new(|| "# TYPE up gauge\nup 1\n# EOF\n".to_string());
        let server = tokio::spawn(serve(listener, render, stop.clone()));
        let ok = get(addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("openmetrics-text"), "{ok}");
        assert!(ok.ends_with("up 1\n# EOF\n"), "{ok}");
        let other = get(addr, "/v1/nodes").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        stop.cancel();
        server.await.unwrap();
    }
}

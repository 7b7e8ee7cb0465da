//! `lb server --metrics IP:PORT`: `GET /metrics` over HTTP/1.1 (hyper), the text `lb ctl
//! metrics` prints, for Prometheus and `curl`.
//!
//! A few scrapers at once ([`MAX_SCRAPERS`]; more are closed at once), each connection with a
//! header-read timeout and a whole-life bound, so that a stalled client holds nothing for long.

use super::hub::Shared;
use super::ops;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

/// Connections served at once.
const MAX_SCRAPERS: usize = 8;
/// How long a request's head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may live (keep-alive included).
const CONNECTION_LIFE: Duration = Duration::from_secs(60);
/// The text exposition format's media type.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `listener` until the task is aborted.
pub(super) async fn serve(hub: Shared, listener: tokio::net::TcpListener) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on the metrics port: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if active.get() >= MAX_SCRAPERS {
            tracing::debug!(%peer, "metrics: {MAX_SCRAPERS} scrapers connected already");
            continue;
        }
        active.set(active.get() + 1);
        let (hub, active) = (Rc::clone(&hub), Rc::clone(&active));
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| {
                let hub = Rc::clone(&hub);
                async move { Ok::<_, Infallible>(respond(&hub, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A connection past its life (a stalled client) is dropped: closed.
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFE, conn).await {
                tracing::debug!(%peer, "metrics connection: {e}");
            }
            active.set(active.get() - 1);
        });
    }
}

async fn respond(hub: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        let mut r = reply(
            StatusCode::NOT_FOUND,
            "not found: the counters are at /metrics\n".into(),
        );
        r.headers_mut().insert(
            CONTENT_TYPE,
            "text/plain; charset=utf-8".parse().expect("valid"),
        );
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "/metrics is read with GET\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, "GET, HEAD".parse().expect("valid"));
        return r;
    }
    let mut r = reply(StatusCode::OK, ops::metrics(hub).await.text);
    r.headers_mut()
        .insert(CONTENT_TYPE, EXPOSITION.parse().expect("valid"));
    r
}

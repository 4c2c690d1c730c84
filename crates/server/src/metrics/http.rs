//! What the admin port answers: `GET /metrics`, `GET /healthz`, and a refusal for anything
//! else. Hyper parses the requests; this module only decides the response, so it is tested
//! without sockets. Nothing here proxies or echoes what the client sent.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::exposition::{self, Format};
use super::health::Health;
use crate::scoreboard::counters::Snapshot;
use crate::scoreboard::LimitRow;

/// What a response is made from: the mother's view of the node and the server's totals.
pub trait Source {
    fn health(&self) -> Health;
    /// None when this process has no counters region (counting is off).
    fn snapshot(&self) -> Option<Snapshot>;
    /// The rules with session limits or bandwidth, and their state.
    fn limits(&self) -> Vec<LimitRow>;
}

/// The response to one request.
pub fn respond<B>(req: &Request<B>, src: &dyn Source) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path {
        "/metrics" | "/healthz" if !get => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let snap = src.snapshot().unwrap_or_default();
            let body = exposition::encode(&snap, &src.limits(), env!("CARGO_PKG_VERSION"), format);
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        "/healthz" => {
            let h = src.health();
            let status = if h.ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut r = text(status, &format!("{}\n", h.reason()));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: this is rsockd's admin port (/metrics, /healthz)\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Fixed(Health);

    impl Source for Fixed {
        fn health(&self) -> Health {
            self.0
        }
        fn snapshot(&self) -> Option<Snapshot> {
            Some(Snapshot {
                negotiating: 4,
                ..Default::default()
            })
        }
        fn limits(&self) -> Vec<LimitRow> {
            Vec::new()
        }
    }

    fn request(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    fn body(r: Response<Full<Bytes>>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn metrics_and_health() {
        let r = respond(&request(Method::GET, "/metrics"), &Fixed(Health::Serving));
        assert_eq!(r.status(), StatusCode::OK);
        let b = body(r);
        assert!(b.contains("\nrsockd_negotiating 4\n"), "{b}");
        let r = respond(
            &request(Method::GET, "/healthz?x=1"),
            &Fixed(Health::Serving),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r), "ok\n");
        let r = respond(&request(Method::GET, "/healthz"), &Fixed(Health::Draining));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "draining (rsockd --drain)\n");
    }

    #[test]
    fn anything_else_is_refused() {
        let src = Fixed(Health::Serving);
        let r = respond(&request(Method::POST, "/metrics"), &src);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        for uri in [
            "/",
            "/metrics/",
            "/../metrics",
            "http://example.com/",
            "/Metrics",
        ] {
            let r = respond(&request(Method::GET, uri), &src);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
        }
        let r = respond(&request(Method::CONNECT, "/x"), &src);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}

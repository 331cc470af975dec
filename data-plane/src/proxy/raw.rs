//! Requests that came through hyper (HTTP/2, HTTP/1.0, …) with their whole body at hand (none,
//! or a small one of declared length, read first), carried upstream the native way: serialized
//! once into an HTTP/1.1 request and sent over a pooled raw connection ([`Native`](super::native::Native)); the
//! response body is decoded from that connection as it arrives ([`RawBody`]).
//! This skips hyper's client: no connection task, no channel per request, no second header map
//! for the request. Larger bodies, and bodies of unknown length, stay on hyper's client, which
//! streams them.

use super::h1::put_header;
use super::h1::{BodyLen, Chunks};
use super::native::{room_for_body, BODY_READ_TIMEOUT};
use super::upstream::RawConn;
use crate::endpoint::Endpoint;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, COOKIE};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Response, StatusCode};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// The HTTP/1.1 request head for `parts` (origin-form target, hop-by-hop headers already gone).
pub fn request_head(parts: &Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(parts.method.as_str().as_bytes());
    b.push(b' ');
    b.extend_from_slice(target.as_bytes());
    b.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == COOKIE {
            continue;
        }
        put_header(&mut b, name.as_str().as_bytes(), value.as_bytes());
    }
    // HTTP/2 may split cookies into several fields; HTTP/1.1 carries one line (RFC 9113 §8.2.3).
    let mut cookies = parts.headers.get_all(COOKIE).iter();
    if let Some(first) = cookies.next() {
        b.extend_from_slice(b"cookie: ");
        b.extend_from_slice(first.as_bytes());
        for more in cookies {
            b.extend_from_slice(b"; ");
            b.extend_from_slice(more.as_bytes());
        }
        b.extend_from_slice(b"\r\n");
    }
    // A method that normally carries a body says it has none, as hyper's client does.
    let bodied = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let framed = parts.headers.contains_key(CONTENT_LENGTH)
        || parts.headers.contains_key(hyper::header::TRANSFER_ENCODING);
    if bodied && !framed {
        b.extend_from_slice(b"content-length: 0\r\n");
    }
    b.extend_from_slice(b"\r\n");
    b
}

/// The HTTP/1.1 request for `parts` with its whole `body`: as the client framed it by length, or
/// chunked when it came with trailers (which only chunked framing carries).
pub fn request_with_body(parts: &mut Parts, body: &[u8], trailers: Option<HeaderMap>) -> Vec<u8> {
    let Some(trailers) = trailers else {
        let mut b = request_head(parts);
        b.extend_from_slice(body);
        return b;
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(
        hyper::header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let mut b = request_head(parts);
    if !body.is_empty() {
        b.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"0\r\n");
    for (name, value) in &trailers {
        put_header(&mut b, name.as_str().as_bytes(), value.as_bytes());
    }
    b.extend_from_slice(b"\r\n");
    b
}

/// Reads a small request body whole, each read bounded by [`BODY_READ_TIMEOUT`] as on the native
/// path: its bytes and trailers, or the reply when the client was too slow (408) or the body
/// broke (400).
pub async fn read_whole(
    mut body: Incoming,
    declared: usize,
) -> Result<(Bytes, Option<HeaderMap>), (StatusCode, &'static str)> {
    use http_body_util::BodyExt;
    let mut data = BytesMut::with_capacity(declared);
    let mut trailers = None;
    loop {
        match tokio::time::timeout(BODY_READ_TIMEOUT, body.frame()).await {
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "request body timed out\n")),
            Ok(None) => return Ok((data.freeze(), trailers)),
            Ok(Some(Err(_))) => {
                return Err((StatusCode::BAD_REQUEST, "request body could not be read\n"))
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok().or(trailers),
            },
        }
    }
}

/// The upstream's response as hyper sends it downstream: its status and end-to-end headers, and
/// a body read from `conn`. `None` when a header is not one hyper can carry (a 502).
pub fn response(conn: RawConn, ep: Arc<Endpoint>) -> Option<Response<RawBody>> {
    let status = StatusCode::from_u16(conn.head.status).ok()?;
    let mut headers = HeaderMap::with_capacity(conn.head.headers.len());
    for (name, value) in conn.head.end_to_end(conn.named) {
        headers.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
    }
    let left = match conn.body {
        BodyLen::Length(n) => n,
        _ => u64::MAX,
    };
    let body = RawBody {
        framing: conn.body,
        left,
        chunks: Chunks::default(),
        trailers: Vec::new(),
        conn: Some((conn, ep)),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Some(r)
}

/// A response body read from a raw upstream connection: counted, de-chunked (trailers kept) or
/// read to the close. The connection goes back to its pool when the body ended cleanly; a body
/// dropped before its end closes it.
#[derive(Debug)]
pub struct RawBody {
    framing: BodyLen,
    /// Bytes left of a counted body.
    left: u64,
    chunks: Chunks,
    /// The trailer section of a chunked body, as it came.
    trailers: Vec<u8>,
    conn: Option<(RawConn, Arc<Endpoint>)>,
}

/// The most trailer bytes and fields taken from an upstream (as hyper's client allowed).
const MAX_TRAILERS: usize = 16 * 1024;
const MAX_TRAILER_FIELDS: usize = 100;

/// How a raw upstream body failed.
fn broken(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl RawBody {
    /// The body has ended: the connection is reusable if it is clean and was not to be closed.
    fn finish(&mut self) {
        if let Some((mut conn, ep)) = self.conn.take() {
            if !conn.close && conn.buf.is_empty() && self.framing != BodyLen::Close {
                conn.reused = true;
                ep.pool.checkin(conn);
            }
        }
    }

    /// What the buffered bytes give, if anything: a frame, the end, or a need for more.
    fn take(&mut self) -> Result<Option<Option<Frame<Bytes>>>, io::Error> {
        let Some((conn, _)) = self.conn.as_mut() else {
            return Ok(Some(None));
        };
        match self.framing {
            BodyLen::Length(_) if self.left == 0 => {
                self.finish();
                Ok(Some(None))
            }
            _ if conn.buf.is_empty() => Ok(None),
            BodyLen::Length(_) => {
                let n = (conn.buf.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                let data = conn.buf.split_to(n).freeze();
                if self.left == 0 {
                    self.finish();
                }
                Ok(Some(Some(Frame::data(data))))
            }
            BodyLen::Close => Ok(Some(Some(Frame::data(conn.buf.split().freeze())))),
            BodyLen::Chunked => loop {
                if conn.buf.is_empty() {
                    return Ok(None);
                }
                if self.chunks.in_trailers() {
                    let n = self.chunks.scan(&conn.buf).map_err(|_| broken("chunk"))?;
                    if self.trailers.len() + n > MAX_TRAILERS {
                        return Err(broken("trailer section too large"));
                    }
                    self.trailers.extend_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                } else {
                    let (n, data) = self.chunks.decode(&conn.buf).map_err(|_| broken("chunk"))?;
                    if !data.is_empty() {
                        let bytes = conn.buf.split_to(n).freeze().slice(data);
                        return Ok(Some(Some(Frame::data(bytes))));
                    }
                    conn.buf.advance(n);
                }
                if self.chunks.done() {
                    let trailers = parse_trailers(&self.trailers)?;
                    self.finish();
                    return Ok(Some(trailers.map(Frame::trailers)));
                }
            },
        }
    }
}

/// A trailer section (`name: value` lines and the final blank line) as a header map; `None`
/// when it is empty.
fn parse_trailers(raw: &[u8]) -> Result<Option<HeaderMap>, io::Error> {
    if raw.len() <= 2 {
        return Ok(None);
    }
    let mut parsed = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let httparse::Status::Complete((_, fields)) =
        httparse::parse_headers(raw, &mut parsed).map_err(|_| broken("trailers"))?
    else {
        return Err(broken("trailers"));
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        map.append(
            HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| broken("trailer name"))?,
            HeaderValue::from_bytes(f.value).map_err(|_| broken("trailer value"))?,
        );
    }
    Ok(Some(map))
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            match self.take() {
                Ok(Some(frame)) => return Poll::Ready(frame.map(Ok)),
                Ok(None) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let close_delimited = self.framing == BodyLen::Close;
            let left = self.left;
            let Some((conn, _)) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            room_for_body(&mut conn.buf, left);
            let read = match conn.io.try_read_buf(&mut conn.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = ready!(conn.io.poll_read_ready(cx)) {
                        Err(e)
                    } else {
                        continue;
                    }
                }
                r => r,
            };
            match read {
                Ok(0) if close_delimited => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(broken("upstream closed mid-body"))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || (matches!(self.framing, BodyLen::Length(_)) && self.left == 0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            BodyLen::Length(_) => SizeHint::with_exact(self.left),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RawBody {
    fn drop(&mut self) {
        // A counted body already read to its end (or empty) leaves a reusable connection.
        if matches!(self.framing, BodyLen::Length(_)) && self.left == 0 {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&'static str, &'static str)]) -> Parts {
        let mut b = hyper::Request::builder().method(method).uri("/p?q=1");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn requests_are_serialized_as_http11_with_their_framing() {
        let p = parts("GET", &[("host", "a")]);
        assert_eq!(request_head(&p), b"GET /p?q=1 HTTP/1.1\r\nhost: a\r\n\r\n");
        let p = parts(
            "GET",
            &[("cookie", "a=1"), ("host", "a"), ("cookie", "b=2")],
        );
        assert_eq!(
            request_head(&p),
            b"GET /p?q=1 HTTP/1.1\r\nhost: a\r\ncookie: a=1; b=2\r\n\r\n"
        );
        let p = parts("POST", &[("host", "a")]);
        assert_eq!(
            request_head(&p),
            b"POST /p?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
        );
        let mut p = parts("PUT", &[("host", "a"), ("content-length", "3")]);
        assert_eq!(
            request_with_body(&mut p, b"abc", None),
            b"PUT /p?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc"
        );
        // Trailers only travel with chunked framing.
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("9"));
        assert_eq!(
            request_with_body(&mut p, b"abc", Some(t)),
            b"PUT /p?q=1 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 9\r\n\r\n"
        );
    }
}

//! HTTP/1.1 on the wire, for the native path: request and response heads parsed by `httparse`
//! into offsets (so a head is kept as one `Bytes` with no per-header allocation), how long a
//! message body is (RFC 9112 §6), and a scanner that finds where a chunked body ends without
//! decoding it, so chunks pass through as they came.

use bytes::Bytes;
use std::mem::MaybeUninit;

/// Headers a head may have.
pub const MAX_HEADERS: usize = 100;
/// Largest head read (request or response); past it the native path gives up on the message.
pub const MAX_HEAD: usize = 64 * 1024;

/// Where something is in a head.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span(u32, u32);

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span(start as u32, (start + part.len()) as u32)
    }

    /// The bytes at this span of `b`.
    pub fn of_bytes(self, b: &[u8]) -> &[u8] {
        &b[self.0 as usize..self.1 as usize]
    }
}

/// A parsed head: the bytes, the start line's parts and each header's name and value.
#[derive(Debug, Default)]
pub struct Head {
    /// The head as received, blank line included.
    pub bytes: Bytes,
    /// Request: method; response: the status line after the version (`200 OK`).
    pub first: Span,
    /// Request: the target (path and query).
    pub target: Span,
    /// Response: the status code.
    pub status: u16,
    /// `HTTP/1.1` (not 1.0).
    pub http11: bool,
    /// Header names and values.
    pub headers: Vec<(Span, Span)>,
}

/// What parsing found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A head this many bytes long.
    Done(usize),
    /// Not HTTP/1.x (or malformed, or too many headers).
    Invalid,
}

impl Head {
    /// The method (requests).
    pub fn method(&self) -> &str {
        std::str::from_utf8(self.first.of_bytes(&self.bytes)).unwrap_or("")
    }

    /// The request target (requests).
    pub fn target(&self) -> &str {
        std::str::from_utf8(self.target.of_bytes(&self.bytes)).unwrap_or("")
    }

    /// `(name, value)` of every header.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.of_bytes(&self.bytes), v.of_bytes(&self.bytes)))
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Parses a request head at the start of `buf`; on `Done` call [`Head::own`] with the bytes.
    pub fn parse_request(&mut self, buf: &[u8]) -> Parsed {
        let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(buf, &mut hs) {
            Ok(httparse::Status::Complete(n)) => {
                self.first = Span::of(buf, req.method.unwrap_or("").as_bytes());
                self.target = Span::of(buf, req.path.unwrap_or("").as_bytes());
                self.http11 = req.version == Some(1);
                self.status = 0;
                self.set_headers(buf, req.headers);
                Parsed::Done(n)
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Invalid,
        }
    }

    /// Parses a response head at the start of `buf`; on `Done` call [`Head::own`].
    pub fn parse_response(&mut self, buf: &[u8]) -> Parsed {
        // Uninitialised: no array of empty headers written for each response.
        let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut hs)
        {
            Ok(httparse::Status::Complete(n)) => {
                // "HTTP/1.x " is 9 bytes; the rest of the line is code and reason.
                let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
                let line_end = line_end.unwrap_or(9).max(9);
                self.first = Span(9, line_end as u32);
                self.target = Span::default();
                self.status = resp.code.unwrap_or(0);
                self.http11 = resp.version == Some(1);
                self.set_headers(buf, resp.headers);
                Parsed::Done(n)
            }
            Ok(httparse::Status::Partial) => Parsed::Partial,
            Err(_) => Parsed::Invalid,
        }
    }

    fn set_headers(&mut self, buf: &[u8], headers: &[httparse::Header<'_>]) {
        self.headers.clear();
        self.headers.extend(
            headers
                .iter()
                .map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))),
        );
    }

    /// Takes the parsed head's bytes (the spans index into them).
    pub fn own(&mut self, bytes: Bytes) {
        self.bytes = bytes;
    }
}

impl crate::router::Headers for Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Appends `name: value` and a line end.
pub fn put_header(b: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    b.extend_from_slice(name);
    b.extend_from_slice(b": ");
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
}

/// Whether a header is hop-by-hop (never forwarded as is).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // By length first: most names are compared with nothing.
    let hop: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    hop.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The tokens of a `Connection` header value, trimmed, empty ones skipped.
pub(crate) fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` token names another header, which is then hop-by-hop for this message
/// (RFC 9110 §7.6.1): any token but `close` and `keep-alive`. A token naming `Content-Length` is
/// ignored: the length frames the body the proxy passes on.
pub(crate) fn names_a_header(t: &[u8]) -> bool {
    !t.eq_ignore_ascii_case(b"close")
        && !t.eq_ignore_ascii_case(b"keep-alive")
        && !t.eq_ignore_ascii_case(b"content-length")
}

/// The headers a head's `Connection` headers name ([`names_a_header`]).
pub fn connection_named(head: &Head) -> Vec<&[u8]> {
    // Looked for only when framing saw such a token (`Framing::named`).
    let mut named = Vec::new();
    for (name, value) in head.iter() {
        if name.len() == 10 && name.eq_ignore_ascii_case(b"connection") {
            named.extend(connection_tokens(value).filter(|t| names_a_header(t)));
        }
    }
    named
}

impl Head {
    /// Whether a header name is passed on: neither hop-by-hop nor named by `Connection`.
    /// `named` as [`Framing::named`] says (when false, no `Connection` header is looked at).
    fn is_end_to_end(&self, named: bool) -> impl Fn(&[u8]) -> bool + '_ {
        let named = if named {
            connection_named(self)
        } else {
            Vec::new()
        };
        move |name| !is_hop_by_hop(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The headers a proxy passes on (see [`is_end_to_end`](Self::is_end_to_end)).
    pub fn end_to_end(&self, named: bool) -> impl Iterator<Item = (&[u8], &[u8])> {
        let keep = self.is_end_to_end(named);
        self.iter().filter(move |(name, _)| keep(name))
    }

    /// Appends the start line (as `HTTP/1.1`) and the header lines `keep` accepts to `out`,
    /// each with its line end, the headers as `name: value` (names in the case received). Lines
    /// already in that form go as received, and lines that follow each other in the head go in
    /// one copy: a plain request none of whose headers is dropped is a single copy.
    pub fn copy_lines<'h>(
        &'h self,
        out: &mut Vec<u8>,
        keep: impl FnMut(&'h [u8], &'h [u8]) -> bool,
    ) {
        self.copy_lines_to(out, None, keep);
    }

    /// [`copy_lines`](Self::copy_lines) of a request, its target replaced by `target` when
    /// given (a route's rewrite).
    #[inline]
    pub fn copy_lines_to<'h>(
        &'h self,
        out: &mut Vec<u8>,
        target: Option<&[u8]>,
        mut keep: impl FnMut(&'h [u8], &'h [u8]) -> bool,
    ) {
        let b = &self.bytes[..];
        let mut lines = Lines { b, run: None };
        match self.plain_start_line().filter(|_| target.is_none()) {
            Some((s, e)) => lines.push(out, s, e),
            None if self.status == 0 => {
                out.extend_from_slice(self.first.of_bytes(b));
                out.push(b' ');
                out.extend_from_slice(target.unwrap_or(self.target.of_bytes(b)));
                out.extend_from_slice(b" HTTP/1.1\r\n");
            }
            None => {
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(self.first.of_bytes(b));
                out.extend_from_slice(b"\r\n");
            }
        }
        for &(name, value) in &self.headers {
            let (n, v) = (name.of_bytes(b), value.of_bytes(b));
            if !keep(n, v) {
                continue;
            }
            // As received only when that is `name: value` already: other whitespace around the
            // colon (legal, but read differently by lenient parsers) is rewritten, so what goes
            // out is byte for byte what rebuilding each line would give.
            if b.get(name.1 as usize..value.0 as usize) == Some(b": ") {
                lines.push(out, name.0 as usize, value.1 as usize);
            } else {
                lines.flush(out);
                put_header(out, n, v);
            }
        }
        lines.flush(out);
    }

    /// [`copy_lines`](Self::copy_lines) of the end-to-end headers; `named` as [`Framing::named`]
    /// says (when false, no header is looked for).
    pub fn copy_end_to_end(&self, out: &mut Vec<u8>, named: bool, drop: impl Fn(&[u8]) -> bool) {
        let keep = self.is_end_to_end(named);
        self.copy_lines(out, |name, _| keep(name) && !drop(name));
    }

    /// Where the start line is in the head (line end excluded) when it can go as received:
    /// `METHOD SP target SP HTTP/1.1` (requests), `HTTP/1.1 SP status` (responses).
    fn plain_start_line(&self) -> Option<(usize, usize)> {
        const V11: &[u8] = b"HTTP/1.1";
        let b = &self.bytes[..];
        let (first, target) = (self.first.0 as usize, self.first.1 as usize);
        if self.status != 0 {
            // A response's `first` is what follows "HTTP/1.x ".
            return (first == 9 && b.starts_with(V11) && b[8] == b' ').then_some((0, target));
        }
        let (t0, t1) = (self.target.0 as usize, self.target.1 as usize);
        (first == 0
            && b.get(target) == Some(&b' ')
            && t0 == target + 1
            && b.get(t1) == Some(&b' ')
            && b.get(t1 + 1..t1 + 9) == Some(V11))
        .then_some((0, t1 + 9))
    }
}

/// Copies spans of a head to an output as lines, spans one CRLF apart in the head as one copy.
struct Lines<'a> {
    b: &'a [u8],
    /// The span being gathered.
    run: Option<(usize, usize)>,
}

impl Lines<'_> {
    fn push(&mut self, out: &mut Vec<u8>, start: usize, end: usize) {
        self.run = match self.run {
            Some((s, e)) if self.b.get(e..start) == Some(b"\r\n") => Some((s, end)),
            _ => {
                self.flush(out);
                Some((start, end))
            }
        };
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some((s, e)) = self.run.take() {
            out.extend_from_slice(&self.b[s..e]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// How a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// After this many bytes (0: no body).
    Length(u64),
    /// With the last chunk.
    Chunked,
    /// When the connection closes (responses only).
    Close,
}

/// What a head says about its body and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// How the body ends.
    pub body: BodyLen,
    /// The sender will close (or wants closed) the connection after this message.
    pub close: bool,
    /// Something the native path leaves to hyper: `Upgrade`, `Expect`, a `Connection` header
    /// naming other headers, a transfer coding other than chunked, conflicting lengths.
    pub unusual: bool,
    /// The length cannot be trusted: a malformed or repeated-and-different `Content-Length`, one
    /// beside `Transfer-Encoding`, or a transfer coding other than a lone `chunked` (which a
    /// proxy that drops `Transfer-Encoding` could not pass on). A request like that goes to hyper
    /// (which decodes or refuses it); a response like that is a broken upstream (502).
    pub bad_length: bool,
    /// A `Host` header is present.
    pub host: bool,
    /// A `Connection` header names other headers (see [`connection_named`]).
    pub named: bool,
}

/// Reads `Content-Length`, `Transfer-Encoding` and `Connection` of a head.
pub fn framing(head: &Head) -> Framing {
    let mut length: Option<u64> = None;
    let mut f = Framing {
        body: BodyLen::Length(0),
        close: !head.http11,
        unusual: false,
        bad_length: false,
        host: false,
        named: false,
    };
    let mut chunked = false;
    // A transfer coding other than a lone `chunked`: the body (of a response) runs to the close.
    let mut other_coding = false;
    for (name, value) in head.iter() {
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // 1*DIGIT only: `+5` or `5 5` would be read differently by someone else.
                let v = value.trim_ascii();
                let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                    .then(|| v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
                match (n, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => {
                        f.unusual = true;
                        f.bad_length = true;
                    }
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if value.eq_ignore_ascii_case(b"chunked") && !chunked && !other_coding {
                    chunked = true;
                } else {
                    f.unusual = true;
                    other_coding = true;
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for t in connection_tokens(value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        if !head.http11 {
                            f.close = false;
                        }
                    } else {
                        f.unusual = true;
                        f.named |= names_a_header(t);
                    }
                }
            }
            4 if name.eq_ignore_ascii_case(b"host") => f.host = true,
            7 if name.eq_ignore_ascii_case(b"upgrade") => f.unusual = true,
            6 if name.eq_ignore_ascii_case(b"expect") => f.unusual = true,
            _ => {}
        }
    }
    if (chunked && length.is_some()) || other_coding {
        f.unusual = true;
        f.bad_length = true;
    }
    f.body = if other_coding {
        BodyLen::Close
    } else if chunked {
        BodyLen::Chunked
    } else {
        BodyLen::Length(length.unwrap_or(0))
    };
    f
}

/// How a response body ends (RFC 9112 §6.3), given the request's method was `HEAD` or not.
pub fn response_body(head: &Head, f: &Framing, head_request: bool) -> BodyLen {
    if head_request || head.status == 204 || head.status == 304 || head.status < 200 {
        return BodyLen::Length(0);
    }
    match f.body {
        BodyLen::Length(0)
            if !head
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length")) =>
        {
            BodyLen::Close
        }
        b => b,
    }
}

/// Finds where a chunked body ends, fed the bytes as they come.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Chunks {
    /// Expecting a chunk size's first hex digit.
    #[default]
    Size,
    /// Reading a chunk size (the value so far).
    SizeDigits(u64),
    /// In a chunk extension, up to the line end.
    Extension(u64),
    /// Expecting the LF after a chunk size line.
    SizeLf(u64),
    /// Inside chunk data (bytes left).
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting the final LF.
    EndLf,
    /// The body has ended.
    Done,
}

/// A malformed chunked body.
#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body")]
pub struct BadChunk;

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

impl Chunks {
    /// How many bytes of `buf` belong to the body: all of them unless it ends inside.
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < buf.len() && *self != Chunks::Done {
            if let Chunks::Data(left) = *self {
                let take = left.min((buf.len() - i) as u64);
                i += take as usize;
                *self = if take == left {
                    Chunks::DataCr
                } else {
                    Chunks::Data(left - take)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            *self = match (*self, b) {
                (Chunks::Size, _) => Chunks::SizeDigits(hex(b).ok_or(BadChunk)?),
                (Chunks::SizeDigits(s), _) if hex(b).is_some() => {
                    Chunks::SizeDigits(s.checked_mul(16).ok_or(BadChunk)? + hex(b).unwrap_or(0))
                }
                (Chunks::SizeDigits(s), b';' | b' ' | b'\t') => Chunks::Extension(s),
                (Chunks::SizeDigits(s) | Chunks::Extension(s), b'\r') => Chunks::SizeLf(s),
                (Chunks::SizeDigits(s) | Chunks::Extension(s) | Chunks::SizeLf(s), b'\n') => {
                    if s == 0 {
                        Chunks::TrailerStart
                    } else {
                        Chunks::Data(s)
                    }
                }
                (Chunks::Extension(s), _) => Chunks::Extension(s),
                (Chunks::DataCr, b'\r') => Chunks::DataLf,
                (Chunks::DataCr | Chunks::DataLf, b'\n') => Chunks::Size,
                (Chunks::TrailerStart, b'\r') => Chunks::EndLf,
                (Chunks::TrailerStart | Chunks::EndLf, b'\n') => Chunks::Done,
                (Chunks::Trailer, b'\n') => Chunks::TrailerStart,
                (Chunks::TrailerStart | Chunks::Trailer, _) => Chunks::Trailer,
                _ => return Err(BadChunk),
            };
        }
        Ok(i)
    }

    /// Whether the body has ended.
    pub fn done(&self) -> bool {
        *self == Chunks::Done
    }

    /// Decodes from the start of `buf` up to the end of the next run of chunk data: how many
    /// bytes that consumed, and where in them the data is (empty when `buf` held only framing).
    /// Whatever is consumed while [`Chunks::in_trailers`] holds is the trailer section.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, std::ops::Range<usize>), BadChunk> {
        let mut i = 0;
        while i < buf.len() && !self.done() {
            if let Chunks::Data(left) = *self {
                let take = left.min((buf.len() - i) as u64) as usize;
                self.scan(&buf[i..i + take])?;
                return Ok((i + take, i..i + take));
            }
            i += self.scan(&buf[i..=i])?;
            if self.in_trailers() {
                break;
            }
        }
        Ok((i, i..i))
    }

    /// Past the last chunk, in the trailer section (or its final blank line).
    pub fn in_trailers(&self) -> bool {
        matches!(self, Chunks::TrailerStart | Chunks::Trailer | Chunks::EndLf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(h: &Head, drop: &str) -> String {
        let mut out = Vec::new();
        h.copy_lines(&mut out, |name, _| {
            !name.eq_ignore_ascii_case(drop.as_bytes())
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn header_lines_go_as_name_value_less_the_dropped_ones() {
        let raw = "GET /a?b HTTP/1.1\r\nHost: x\r\nX-Drop: 1\r\nx-a:  spaced \t\r\nX-B:\r\n\r\n";
        let h = head(raw, false);
        assert_eq!(
            lines(&h, "x-drop"),
            "GET /a?b HTTP/1.1\r\nHost: x\r\nx-a: spaced\r\nX-B: \r\n"
        );
        assert_eq!(
            lines(&h, "none"),
            "GET /a?b HTTP/1.1\r\nHost: x\r\nX-Drop: 1\r\nx-a: spaced\r\nX-B: \r\n"
        );
        assert_eq!(
            lines(&h, "host"),
            "GET /a?b HTTP/1.1\r\nX-Drop: 1\r\nx-a: spaced\r\nX-B: \r\n"
        );
        // Whitespace a lenient parser could read differently is rewritten, not passed on.
        let h = head(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t5\r\nX-T:\t \tt\r\n\r\n",
            false,
        );
        assert_eq!(
            lines(&h, "none"),
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-T: t\r\n"
        );
    }

    #[test]
    fn start_lines_not_sent_as_received_are_rebuilt() {
        // A leading empty line, bare LF line ends, an HTTP/1.0 response.
        let h = head("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert_eq!(lines(&h, "none"), "GET / HTTP/1.1\r\nHost: x\r\n");
        let h = head("GET / HTTP/1.1\nHost: x\nA: b\n\n", false);
        assert_eq!(lines(&h, "none"), "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n");
        let h = head("HTTP/1.0 200 OK\r\nA: b\r\n\r\n", true);
        assert_eq!(lines(&h, "none"), "HTTP/1.1 200 OK\r\nA: b\r\n");
        let h = head(
            "HTTP/1.1 404 Not Found\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nA: b\r\n\r\n",
            true,
        );
        let mut out = Vec::new();
        h.copy_end_to_end(&mut out, framing(&h).named, |_| false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nA: b\r\n"
        );
    }

    /// Decodes `body` fed in pieces split at `cut`: the data and the trailer section.
    fn decode_split(body: &[u8], cut: usize) -> Result<(Vec<u8>, Vec<u8>), BadChunk> {
        let (mut data, mut trailers) = (Vec::new(), Vec::new());
        let mut c = Chunks::default();
        let mut held = Vec::new();
        for piece in [&body[..cut], &body[cut..]] {
            held.extend_from_slice(piece);
            while !held.is_empty() && !c.done() {
                if c.in_trailers() {
                    let n = c.scan(&held)?;
                    trailers.extend_from_slice(&held[..n]);
                    held.drain(..n);
                    continue;
                }
                let (n, r) = c.decode(&held)?;
                data.extend_from_slice(&held[r]);
                held.drain(..n);
                if n == 0 {
                    break;
                }
            }
        }
        assert!(c.done(), "body ends");
        Ok((data, trailers))
    }

    #[test]
    fn chunked_bodies_decode_to_their_data_wherever_they_are_split() {
        let body = b"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 9\r\n\r\n";
        for cut in 0..=body.len() {
            let (data, trailers) = decode_split(body, cut).expect("well-formed");
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "cut at {cut}");
            assert_eq!(trailers, b"x-sum: 9\r\n\r\n", "cut at {cut}");
        }
        let (data, trailers) = decode_split(b"0\r\n\r\n", 2).expect("empty body");
        assert!(data.is_empty());
        assert_eq!(trailers, b"\r\n");
        assert!(decode_split(b"5\r\nhelloXX0\r\n\r\n", 3).is_err());
        assert!(decode_split(b"zz\r\n", 1).is_err());
    }

    fn head(raw: &str, response: bool) -> Head {
        let mut h = Head::default();
        let r = if response {
            h.parse_response(raw.as_bytes())
        } else {
            h.parse_request(raw.as_bytes())
        };
        assert_eq!(r, Parsed::Done(raw.len()));
        h.own(Bytes::copy_from_slice(raw.as_bytes()));
        h
    }

    #[test]
    fn a_request_head_is_kept_as_offsets() {
        let h = head(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            false,
        );
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/a?b=1");
        assert!(h.http11);
        assert_eq!(h.get("host"), Some(&b"x"[..]));
        let v: Vec<_> = crate::router::Headers::values(&h, "x-a").collect();
        assert_eq!(v, vec![&b"1"[..], &b"2"[..]]);
        let mut p = Head::default();
        assert_eq!(p.parse_request(b"GET / HTTP/1.1\r\nHost"), Parsed::Partial);
        assert_eq!(
            p.parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Parsed::Invalid
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = framing(&head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", false));
        assert_eq!(
            (f.body, f.close, f.unusual),
            (BodyLen::Length(5), false, false)
        );
        let f = framing(&head("GET / HTTP/1.0\r\n\r\n", false));
        assert!(f.close);
        let f = framing(&head(
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            false,
        ));
        assert!(!f.close);
        for unusual in [
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: x-secret\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(framing(&head(unusual, false)).unusual, "{unusual}");
        }
        // Whether `Connection` names headers: what decides if a response's are looked for.
        for (conn, named, host) in [
            ("keep-alive, close", false, false),
            ("close, X-Secret", true, false),
            ("content-length", false, true),
        ] {
            let h = head(
                &format!(
                    "GET / HTTP/1.1\r\nConnection: {conn}\r\n{}\r\n",
                    if host { "Host: a\r\n" } else { "" }
                ),
                false,
            );
            let f = framing(&h);
            assert_eq!((f.named, f.host), (named, host), "{conn}");
            assert_eq!(f.named, !connection_named(&h).is_empty(), "{conn}");
        }
        let r = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.first.of_bytes(&r.bytes), b"200 OK");
        assert_eq!(response_body(&r, &framing(&r), false), BodyLen::Chunked);
        assert_eq!(response_body(&r, &framing(&r), true), BodyLen::Length(0));
        let r = head("HTTP/1.1 200 OK\r\n\r\n", true);
        assert_eq!(response_body(&r, &framing(&r), false), BodyLen::Close);
        let r = head("HTTP/1.1 204 No Content\r\n\r\n", true);
        assert_eq!(response_body(&r, &framing(&r), false), BodyLen::Length(0));
        // Transfer codings a proxy dropping `Transfer-Encoding` could not pass on.
        for coded in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(framing(&head(coded, true)).bad_length, "{coded}");
        }
        // Only other headers are dropped for `Connection`, never the length.
        let r = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop, Content-Length\r\nContent-Length: 2\r\n\r\n",
            true,
        );
        assert_eq!(connection_named(&r), vec![&b"X-Hop"[..]]);
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_says_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for split in 0..=body.len() {
            let mut c = Chunks::default();
            let a = c
                .scan(&with_next[..split])
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a, split);
            let b = c
                .scan(&with_next[split..])
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(c.done(), "split at {split}");
            assert_eq!(a + b, body.len(), "split at {split}");
        }
        let mut c = Chunks::default();
        assert_eq!(c.scan(b"0\r\n\r\n").ok(), Some(5));
        assert!(c.done());
        assert!(Chunks::default().scan(b"zz\r\n").is_err());
        assert!(Chunks::default().scan(b"2\r\nabX").is_err());
        assert!(Chunks::default().scan(b"ffffffffffffffffff\r\n").is_err());
    }
}

//! HTTP/1.1 as far as the test server needs it: one request read (bounded head and body,
//! chunked or by length, `Expect: 100-continue`), one JSON answer written, a gentle close.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::sim::to_u64;

pub(crate) const MAX_HEAD_BYTES: u64 = 64 * 1024;
pub(crate) const MAX_HEADERS: usize = 100;
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) keep_alive: bool,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between requests, or went idle.
    Closed,
    /// Not a request we can answer: answered with this status and the connection closed.
    Malformed(u16, String),
    /// Reading failed (a reset, or the idle timeout): the connection is dropped.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

pub(crate) fn malformed(reason: impl Into<String>) -> ReadError {
    ReadError::Malformed(400, reason.into())
}

/// Reads one line of the request head (at most what is left of the head's budget).
pub(crate) fn read_head_line(
    reader: &mut BufReader<TcpStream>,
    budget: &mut u64,
) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    *budget -= to_u64(n);
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if *budget == 0 {
            ReadError::Malformed(431, "request head too large".to_owned())
        } else {
            malformed("connection closed inside the request head")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| malformed("request head is not UTF-8"))
}

pub(crate) fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let line = read_head_line(reader, &mut budget).map_err(|e| match e {
            ReadError::Closed => malformed("connection closed inside a chunked body"),
            other => other,
        })?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| malformed(format!("bad chunk size {size:?}")))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Malformed(
                413,
                "request body too large".to_owned(),
            ));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_head_line(reader, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(malformed("chunk not followed by CRLF"));
        }
    }
}

pub(crate) fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = read_head_line(reader, &mut budget)?;
    // A server should ignore empty lines before the request line (RFC 9112, 2.2).
    while line.is_empty() {
        line = read_head_line(reader, &mut budget)?;
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(malformed(format!("bad request line {line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(malformed(format!("bad method {method:?}")));
    }
    if !target.starts_with('/') {
        return Err(malformed(format!("bad request target {target:?}")));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(malformed(format!("unsupported protocol {version:?}"))),
    };
    let (method, target) = (method.to_owned(), target.to_owned());

    let mut headers = Vec::new();
    loop {
        let line = read_head_line(reader, &mut budget).map_err(|e| match e {
            ReadError::Closed => malformed("connection closed inside the request head"),
            other => other,
        })?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Malformed(431, "too many headers".to_owned()));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("bad header line {line:?}")))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(malformed(format!("bad header name {name:?}")));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match header("content-length") {
        Some(text) if !chunked => Some(
            text.parse::<usize>()
                .map_err(|_| malformed(format!("bad Content-Length {text:?}")))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ReadError::Malformed(
            413,
            "request body too large".to_owned(),
        ));
    }
    let expects_body = chunked || length.is_some_and(|n| n > 0);
    if expects_body
        && header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && !http10
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0u8; length.unwrap_or(0)];
        reader.read_exact(&mut body).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                malformed("connection closed inside the request body")
            } else {
                ReadError::Io
            }
        })?;
        body
    };
    Ok(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    })
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

pub(crate) fn write_response(
    writer: &mut TcpStream,
    status: u16,
    body: &Value,
    headers: &[(&str, &str)],
    keep_alive: bool,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
         {extra}Content-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut message = head.into_bytes();
    message.extend_from_slice(&body);
    writer.write_all(&message)?;
    writer.flush()
}

/// Closes gently after an error answer: reads and drops what the peer still sends (for a
/// moment, up to a limit), so closing with unread input does not reset the connection and
/// destroy the answer before the peer has read it.
pub(crate) fn linger(reader: &mut BufReader<TcpStream>, writer: &TcpStream) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = writer.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut reader.by_ref().take(16 * 1024 * 1024), &mut io::sink());
}

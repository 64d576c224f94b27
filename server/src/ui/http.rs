//! The little HTTP/1.1 the web UI needs, on a blocking socket: one request
//! per connection (its head already read by the admin server), a body of
//! bounded size, and a response with its headers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a request body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The largest request body taken (a node's data is at most
/// `jute.maxbuffer`, 1 MiB by default, and travels as base64 in JSON).
pub const MAX_BODY: usize = 2 << 20;

pub struct Request {
    pub method: String,
    /// The path without its query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json(value: &serde_json::Value) -> Self {
        Response::new("200 OK", "application/json", value.to_string())
    }

    pub fn error(status: &'static str, message: &str) -> Self {
        Response::new(
            status,
            "application/json",
            serde_json::json!({ "error": message }).to_string(),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Parses the head the admin server read (`head` may hold the start of the
/// body too) and reads the rest of the body from `stream`.
pub fn read_request(stream: &mut TcpStream, head: Vec<u8>) -> Result<Request, Response> {
    let bad = |why: &str| Response::error("400 Bad Request", why);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(&head) {
        Ok(httparse::Status::Complete(used)) => used,
        _ => return Err(bad("incomplete request head")),
    };
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect::<Result<Vec<_>, Response>>()?;
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| bad("bad Content-Length"))?
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(Response::error(
            "413 Payload Too Large",
            "request body too large",
        ));
    }
    let mut body = head[used..].to_vec();
    body.truncate(length);
    // The whole body within BODY_DEADLINE, not just each read: a client
    // trickling bytes does not keep a UI thread.
    let deadline = Instant::now() + BODY_DEADLINE;
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < length {
        if Instant::now() > deadline {
            return Err(bad("request body too slow"));
        }
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return Err(bad("request body cut short")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(Request {
        method,
        path: percent_decode(path)?,
        query,
        headers,
        body,
    })
}

/// `%XX` escapes and `+` (a space, in a query) decoded; invalid UTF-8 or a
/// broken escape is a bad request.
fn percent_decode(text: &str) -> Result<String, Response> {
    let bad = || Response::error("400 Bad Request", "bad percent-encoding");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

pub fn write_response(stream: &mut TcpStream, response: &Response) {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&response.body));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_takes_escapes_and_plus_and_refuses_broken_ones() {
        assert_eq!(
            percent_decode("%2Fbrokers%2Fids+x").ok().as_deref(),
            Some("/brokers/ids x")
        );
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
    }
}

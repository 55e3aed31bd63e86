//! A raw HTTP/1.1 client over TCP: the cases choose the framing byte for byte, including
//! bodies that are chunked, oversized, or announced and never sent.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Answer, Framing, Req};

/// Guards against a hung server; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Sends `req` on a new connection and reads the answer.
pub async fn send(addr: SocketAddr, req: &Req) -> Answer {
    tokio::time::timeout(HANG_GUARD, exchange(addr, req))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer from {addr} to {} within {HANG_GUARD:?}",
                req.path
            )
        })
}

async fn exchange(addr: SocketAddr, req: &Req) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let bytes = encode(addr, req);
    // The server may answer (413) and close before it has read everything: what matters
    // is the answer, so a failed write is not an error here.
    let _ = stream.write_all(&bytes).await;
    let mut received = Vec::new();
    let mut buf = [0_u8; 8192];
    loop {
        if let Some(answer) = parse(&received) {
            return answer;
        }
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived: what was read counts.
            Err(_) => break,
        }
    }
    parse(&received).unwrap_or_else(|| {
        panic!(
            "incomplete answer from {addr}: {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

fn encode(addr: SocketAddr, req: &Req) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            req.method, req.path
        )
        .as_bytes(),
    );
    for (name, value) in &req.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match &req.framing {
        Framing::Length => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes());
            out.extend_from_slice(&req.body);
        }
        Framing::Chunked(size) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for piece in req.body.chunks((*size).max(1)) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Framing::DeclaredOnly(length) => {
            out.extend_from_slice(format!("Content-Length: {length}\r\n\r\n").as_bytes());
        }
    }
    out
}

/// A complete response in `received`, if there is one yet.
fn parse(received: &[u8]) -> Option<Answer> {
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&received[..head_end]).ok()?;
    let rest = &received[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_length = None;
    let mut chunked = false;
    let mut retry_after = None;
    let mut content_type = None;
    let mut hook_secret = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "retry-after" => retry_after = Some(value.to_owned()),
            "content-type" => content_type = Some(value.to_owned()),
            "x-hook-secret" => hook_secret = Some(value.to_owned()),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        let length = content_length?;
        if rest.len() < length {
            return None;
        }
        rest[..length].to_vec()
    };
    Some(Answer {
        status,
        code: String::from_utf8_lossy(&body).into_owned(),
        retry_after,
        content_type,
        hook_secret,
    })
}

/// The body of a complete chunked message, if it is complete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

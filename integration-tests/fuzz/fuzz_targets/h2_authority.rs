//! The filter between the control socket and h2 (crates/vault-h2authority): a client's byte
//! stream, read whole and read in the pieces a slow or odd client sends. The result must not
//! depend on how the bytes arrive; what is not HTTP/2 must pass unchanged; and a stream with no
//! header block to mend must pass unchanged too.
//!
//! Input: one byte of flags (bit 0: start with the client preface), the sizes of the pieces
//! (a count byte, then that many bytes), then the stream.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use vault_h2authority::AuthorityFix;
use vault_h2authority::hpack::Mirror;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client whose bytes arrive in pieces of the given sizes (0 reads as 1), cycling.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.sizes {
            [] => self.data.len(),
            sizes => usize::from(sizes[self.next % sizes.len()]).max(1),
        };
        self.next += 1;
        let n = size.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// Everything h2 would read, asking for at most `ask` bytes a time. The client is always
/// ready, so the filter never waits: a Pending would be a bug.
fn read_all(mut reader: impl AsyncRead + Unpin, ask: usize) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut buf = vec![0u8; ask];
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut reader).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return out,
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(e)) => panic!("a read error from an in-memory client: {e}"),
            Poll::Pending => panic!("the filter waits on a client that is ready"),
        }
    }
}

/// Whether some header block of the stream would be mended: walk its frames as h2 would
/// (a simplified walk: HEADERS/CONTINUATION payloads joined, padding and priority dropped).
fn needs_mending(stream: &[u8]) -> bool {
    let Some(mut rest) = stream.strip_prefix(PREFACE) else {
        return false;
    };
    let mut mirror = Mirror::default();
    let mut block = Vec::new();
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        if len > vault_h2authority::MAX_FRAME || rest.len() < 9 + len {
            return false;
        }
        let mut payload = &rest[9..9 + len];
        rest = &rest[9 + len..];
        match kind {
            0x1 => {
                if flags & 0x8 != 0 {
                    let Some((&pad, tail)) = payload.split_first() else {
                        return false;
                    };
                    let Some(end) = tail.len().checked_sub(usize::from(pad)) else {
                        return false;
                    };
                    payload = &tail[..end];
                }
                if flags & 0x20 != 0 {
                    let Some(tail) = payload.get(5..) else {
                        return false;
                    };
                    payload = tail;
                }
                block = payload.to_vec();
            }
            0x9 => block.extend_from_slice(payload),
            _ => continue,
        }
        if flags & 0x4 != 0 {
            match mirror.rewrite(&block) {
                Ok(Some(_)) => return true,
                Ok(None) => block.clear(),
                Err(_) => return false,
            }
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(usize::from(count).min(rest.len()));
    let mut stream = Vec::new();
    if flags & 1 != 0 {
        stream.extend_from_slice(PREFACE);
    }
    stream.extend_from_slice(body);

    let whole = read_all(AuthorityFix::new(stream.as_slice()), 64 * 1024);
    let pieces = Pieces {
        data: &stream,
        sizes,
        next: 0,
    };
    let ask = sizes.first().map_or(4096, |&s| usize::from(s).max(1) * 7);
    let pieced = read_all(AuthorityFix::new(pieces), ask);
    assert_eq!(whole, pieced, "the output depends on how the bytes arrive");
    if !stream.starts_with(PREFACE) || !needs_mending(&stream) {
        assert_eq!(whole, stream, "a stream with nothing to mend was changed");
    }
});

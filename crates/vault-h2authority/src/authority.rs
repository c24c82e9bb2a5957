//! What stock gRPC clients send as `:authority` over a Unix socket, made acceptable to h2.
//!
//! h2 (under hyper and tonic) parses `:authority` as a URI authority and resets the stream
//! (PROTOCOL_ERROR) when it is not one, before any service or tower layer sees the request
//! (hyperium/h2#487 and hyperium/tonic#243 are still open). Over a Unix socket there is no host,
//! and the common stacks send:
//! - gRPC C-core (Python's grpcio, Ruby, PHP) 1.57 and later: the socket path, percent-encoded
//!   (`%2Frun%2Fvaultd%2Fvaultd.sock`); earlier versions: `localhost`;
//! - grpc-java, older grpc-go and grpcurl: the path itself (`/run/vaultd/vaultd.sock`);
//! - grpc-go today and tonic: `localhost` or the URI they were given.
//!
//! [`AuthorityFix`] sits between the socket and h2. It reads the client's frames, passes all
//! of them through as they come except header blocks (HEADERS and its CONTINUATIONs), which it
//! gathers, walks with an HPACK mirror ([`crate::hpack`]) and forwards with every unacceptable
//! `:authority` replaced. The payload of other frames (a passphrase in an Unlock's DATA) is read
//! straight into h2's buffer and never held here. Anything it cannot follow (not HTTP/2, a frame
//! larger than announced, a block it cannot parse) is passed on unchanged from then on, for h2
//! to judge as it always did.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hpack::Mirror;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE as vaultd's h2 announces it (the protocol's default and minimum).
pub const MAX_FRAME: usize = 16_384;
/// The most of one header block gathered here; past it the block goes on unchanged (h2's own
/// header-list limit refuses it).
const MAX_BLOCK: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the client's connection preface.
    Preface,
    /// Reading a frame header (9 bytes).
    Head,
    /// This many payload bytes go straight through.
    Pass(usize),
    /// Gathering the payload of a HEADERS or CONTINUATION frame.
    Held(usize),
    /// Everything goes straight through from now on.
    Through,
}

/// The first frame of a header block being gathered.
#[derive(Debug, Clone, Copy)]
struct BlockStart {
    flags: u8,
    stream: [u8; 4],
    priority: Option<[u8; 5]>,
}

/// A client's byte stream with its `:authority` values made acceptable (see the module).
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// The bytes of the preface or frame header being read.
    unit: Vec<u8>,
    /// The raw frames of the header block being gathered (forwarded as they are if unchanged).
    held: Vec<u8>,
    /// Where the frame being gathered starts in `held`.
    frame_at: usize,
    /// The block's fragments, joined.
    block: Vec<u8>,
    start: Option<BlockStart>,
    /// Bytes ready for h2, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    mirror: Mirror,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Preface,
            unit: Vec::with_capacity(PREFACE.len()),
            held: Vec::new(),
            frame_at: 0,
            block: Vec::new(),
            start: None,
            out: Vec::new(),
            out_at: 0,
            mirror: Mirror::default(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Give up following: what is held goes on as it came, and so does the rest.
    fn through(&mut self) {
        self.out.append(&mut self.held);
        self.out.append(&mut self.unit);
        self.block.clear();
        self.start = None;
        self.state = State::Through;
    }

    /// How many more bytes the unit being read needs.
    fn wanted(&self) -> usize {
        match self.state {
            State::Preface => PREFACE.len() - self.unit.len(),
            State::Head => 9 - self.unit.len(),
            State::Held(left) => left,
            State::Pass(_) | State::Through => 0,
        }
    }

    /// A unit is complete: act on it.
    fn complete(&mut self) {
        match self.state {
            State::Preface => {
                let preface = std::mem::take(&mut self.unit);
                self.out.extend_from_slice(&preface);
                self.state = if preface == PREFACE {
                    State::Head
                } else {
                    State::Through
                };
            }
            State::Head => self.frame_header(),
            State::Held(_) => self.held_frame(),
            State::Pass(_) | State::Through => {}
        }
    }

    fn frame_header(&mut self) {
        let head = std::mem::take(&mut self.unit);
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let kind = head[3];
        let in_block = self.start.is_some();
        if len > MAX_FRAME
            || (in_block && kind != CONTINUATION)
            || (!in_block && kind == CONTINUATION)
        {
            // h2 answers these with a connection error; it should see them as they came.
            self.unit = head;
            self.through();
            return;
        }
        if kind == HEADERS || kind == CONTINUATION {
            self.frame_at = self.held.len();
            self.held.extend_from_slice(&head);
            self.state = State::Held(len);
            if len == 0 {
                self.held_frame();
            }
        } else {
            self.out.extend_from_slice(&head);
            self.state = if len == 0 {
                State::Head
            } else {
                State::Pass(len)
            };
        }
    }

    /// A HEADERS or CONTINUATION frame is in `held`: take its fragment, and at the end of the
    /// block, forward it (mended where needed).
    fn held_frame(&mut self) {
        let Some((fragment, flags)) = self.fragment() else {
            self.through();
            return;
        };
        if self.block.len() + fragment.len() > MAX_BLOCK {
            self.through();
            return;
        }
        self.block.extend_from_slice(&self.held[fragment]);
        self.state = State::Head;
        if flags & END_HEADERS == 0 {
            return;
        }
        let start = self.start.take();
        let block = std::mem::take(&mut self.block);
        match (self.mirror.rewrite(&block), start) {
            (Ok(None), _) => self.out.append(&mut self.held),
            (Ok(Some(mended)), Some(start)) => {
                self.held.clear();
                self.emit(start, &mended);
            }
            _ => self.through(),
        }
    }

    /// Where the header block fragment of the frame at `frame_at` lies in `held`, and the
    /// frame's flags; a HEADERS frame also starts the block. `None`: the frame is malformed.
    fn fragment(&mut self) -> Option<(std::ops::Range<usize>, u8)> {
        let frame = &self.held[self.frame_at..];
        let (kind, flags) = (frame[3], frame[4]);
        let payload_at = self.frame_at + 9;
        let end = self.held.len();
        if kind != HEADERS {
            return Some((payload_at..end, flags));
        }
        let payload = &frame[9..];
        let mut at = 0;
        let mut pad = 0;
        if flags & PADDED != 0 {
            pad = usize::from(*payload.first()?);
            at += 1;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            priority = Some(<[u8; 5]>::try_from(payload.get(at..at + 5)?).ok()?);
            at += 5;
        }
        let fragment_end = payload.len().checked_sub(pad).filter(|&e| e >= at)?;
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&frame[5..9]);
        self.start = Some(BlockStart {
            flags,
            stream,
            priority,
        });
        Some((payload_at + at..payload_at + fragment_end, flags))
    }

    /// A header block as HEADERS (+ CONTINUATIONs), with the first frame's END_STREAM and
    /// priority; no padding.
    fn emit(&mut self, start: BlockStart, block: &[u8]) {
        let priority: &[u8] = start.priority.as_ref().map_or(&[], |p| &p[..]);
        let first_room = MAX_FRAME - priority.len();
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut flags = start.flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.frame(priority.len() + first.len(), HEADERS, flags, start.stream);
        self.out.extend_from_slice(priority);
        self.out.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            let flags = if tail.is_empty() { END_HEADERS } else { 0 };
            self.frame(chunk.len(), CONTINUATION, flags, start.stream);
            self.out.extend_from_slice(chunk);
            rest = tail;
        }
    }

    fn frame(&mut self, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        self.out.extend_from_slice(&len[1..]);
        self.out.extend_from_slice(&[kind, flags]);
        self.out.extend_from_slice(&stream);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_at);
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.state {
                State::Through => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Pass(left) => {
                    // Straight into h2's buffer, no further than this frame.
                    let dst = buf.initialize_unfilled_to(left.min(buf.remaining()));
                    let mut part = ReadBuf::new(dst);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
                    let n = part.filled().len();
                    buf.advance(n);
                    if n > 0 {
                        this.state = if n == left {
                            State::Head
                        } else {
                            State::Pass(left - n)
                        };
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Preface | State::Head | State::Held(_) => {
                    let want = this.wanted();
                    let target = if matches!(this.state, State::Held(_)) {
                        &mut this.held
                    } else {
                        &mut this.unit
                    };
                    let had = target.len();
                    target.resize(had + want, 0);
                    let mut part = ReadBuf::new(&mut target[had..]);
                    let polled = Pin::new(&mut this.inner).poll_read(cx, &mut part);
                    let n = match &polled {
                        Poll::Ready(Ok(())) => part.filled().len(),
                        _ => 0,
                    };
                    target.truncate(had + n);
                    ready!(polled)?;
                    if n == 0 {
                        // End of stream mid-unit: hand over what came, then the end.
                        this.through();
                        if this.out.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    if let State::Held(left) = this.state {
                        this.state = State::Held(left - n);
                    }
                    if this.wanted() == 0 {
                        this.complete();
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;

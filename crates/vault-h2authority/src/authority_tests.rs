use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("len").to_be_bytes();
    let mut out = len[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const SETTINGS: u8 = 0x4;
const DATA: u8 = 0x0;

/// :method POST, :scheme http, :path /vault.v1.Vault/Status (literal), :authority `value`
/// (literal with incremental indexing).
fn request_block(authority: &[u8]) -> Vec<u8> {
    let path = b"/vault.v1.Vault/Status";
    let mut block = vec![0x83, 0x86, 0x04, u8::try_from(path.len()).expect("len")];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, u8::try_from(authority.len()).expect("len")]);
    block.extend_from_slice(authority);
    block
}

/// Reads at most one byte per call, as a slow client's bytes arrive.
struct Trickle<'a>(&'a [u8]);

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((&first, rest)) = self.0.split_first() {
            buf.put_slice(&[first]);
            self.0 = rest;
        }
        Poll::Ready(Ok(()))
    }
}

async fn through_fix(input: &[u8]) -> Vec<u8> {
    let mut whole = Vec::new();
    AuthorityFix::new(input)
        .read_to_end(&mut whole)
        .await
        .expect("read");
    let mut trickled = Vec::new();
    AuthorityFix::new(Trickle(input))
        .read_to_end(&mut trickled)
        .await
        .expect("read");
    assert_eq!(whole, trickled, "the same however the bytes arrive");
    whole
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

#[tokio::test]
async fn a_percent_encoded_path_is_mended_and_everything_else_kept() {
    let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let data = frame(DATA, END_STREAM, 1, b"\0\0\0\0\x06secret");
    let input = connection(&[
        settings.clone(),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block(b"%2Frun%2Fvaultd.sock"),
        ),
        data.clone(),
    ]);
    let expected = connection(&[
        settings,
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block(b"-2Frun-2Fvaultd.sock"),
        ),
        data,
    ]);
    assert_eq!(through_fix(&input).await, expected);
}

#[tokio::test]
async fn acceptable_authorities_and_other_protocols_pass_byte_for_byte() {
    let input = connection(&[
        frame(SETTINGS, 0, 0, &[]),
        frame(HEADERS, END_HEADERS, 1, &request_block(b"localhost")),
        frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"),
    ]);
    assert_eq!(through_fix(&input).await, input);
    let http1 = b"GET / HTTP/1.1\r\nHost: /x\r\n\r\n".to_vec();
    assert_eq!(through_fix(&http1).await, http1);
    // A frame larger than vaultd announces: h2 must see it as it is (and refuse it).
    let big = connection(&[frame(DATA, 0, 1, &vec![0u8; MAX_FRAME + 1])]);
    assert_eq!(through_fix(&big).await, big);
}

#[tokio::test]
async fn a_block_over_continuations_with_padding_and_priority_is_sent_as_one_frame() {
    let block = request_block(b"/run/vaultd/vaultd.sock");
    let (a, b) = block.split_at(10);
    let mut first = vec![3u8]; // pad length
    first.extend_from_slice(&[0x80, 0, 0, 0, 0x10]); // exclusive, depends on 0, weight 16
    first.extend_from_slice(a);
    first.extend_from_slice(&[0, 0, 0]);
    let input = connection(&[
        frame(HEADERS, END_STREAM | PADDED | PRIORITY, 3, &first),
        frame(CONTINUATION, END_HEADERS, 3, b),
    ]);
    let mut mended = vec![0x80, 0, 0, 0, 0x10];
    mended.extend_from_slice(&request_block(b"-run-vaultd-vaultd.sock"));
    let expected = connection(&[frame(
        HEADERS,
        END_STREAM | PRIORITY | END_HEADERS,
        3,
        &mended,
    )]);
    assert_eq!(through_fix(&input).await, expected);
}

#[tokio::test]
async fn a_table_reference_in_a_later_request_still_resolves() {
    let input = connection(&[
        frame(HEADERS, END_HEADERS, 1, &request_block(b"%2Fs")),
        // The second request names the inserted :authority by index 62.
        frame(HEADERS, END_HEADERS, 3, &[0x83, 0x86, 0x84, 0xbe]),
    ]);
    let expected = connection(&[
        frame(HEADERS, END_HEADERS, 1, &request_block(b"-2Fs")),
        frame(HEADERS, END_HEADERS, 3, &[0x83, 0x86, 0x84, 0xbe]),
    ]);
    assert_eq!(through_fix(&input).await, expected);
}

#[tokio::test]
async fn an_interrupted_or_unreadable_block_goes_on_unchanged() {
    // A DATA frame inside a header block: a connection error for h2, left for it to see.
    let interrupted = connection(&[
        frame(HEADERS, 0, 1, &request_block(b"/x")),
        frame(DATA, 0, 1, b"x"),
        frame(HEADERS, END_HEADERS, 3, &request_block(b"/y")),
    ]);
    assert_eq!(through_fix(&interrupted).await, interrupted);
    // HPACK that does not parse (index 0).
    let bad = connection(&[frame(HEADERS, END_HEADERS, 1, &[0x80])]);
    assert_eq!(through_fix(&bad).await, bad);
    // The end of the stream in the middle of a frame.
    let mut cut = connection(&[frame(HEADERS, END_HEADERS, 1, &request_block(b"/x"))]);
    cut.truncate(cut.len() - 3);
    assert_eq!(through_fix(&cut).await, cut);
}

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The canonical code of each symbol, for encoding in tests.
fn code_of(symbol: u8) -> (u32, usize) {
    let table = canonical();
    let len = usize::from(CODE_LENGTHS[usize::from(symbol)]);
    let start = table.first_index[len] as usize;
    let rank = table.symbols[start..]
        .iter()
        .position(|&s| s == u16::from(symbol))
        .expect("symbol");
    (
        table.first_code[len] + u32::try_from(rank).expect("rank"),
        len,
    )
}

fn huffman_encode(text: &[u8]) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u64, 0usize, Vec::new());
    for &b in text {
        let (code, len) = code_of(b);
        acc = (acc << len) | u64::from(code);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).expect("byte"));
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        acc = (acc << pad) | ((1 << pad) - 1);
        out.push(u8::try_from(acc & 0xff).expect("byte"));
    }
    out
}

#[test]
fn the_static_names_are_rfc_7541s() {
    assert_eq!(STATIC_NAMES[0], ":authority");
    assert_eq!(STATIC_NAMES[37], "host");
    assert_eq!(STATIC_NAMES[57], "user-agent");
    assert_eq!(STATIC_NAMES[60], "www-authenticate");
}

#[test]
fn huffman_decodes_the_rfc_examples() {
    for (encoded, text) in [
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        (
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            "Mon, 21 Oct 2013 20:13:21 GMT",
        ),
        (
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            "https://www.example.com",
        ),
    ] {
        assert_eq!(huffman_decode(&hex(encoded)), Ok(text.as_bytes().to_vec()));
        assert_eq!(huffman_encode(text.as_bytes()), hex(encoded), "{text}");
    }
    let every: Vec<u8> = (0..=255).collect();
    assert_eq!(huffman_decode(&huffman_encode(&every)), Ok(every));
}

#[test]
fn huffman_refuses_bad_padding_and_eos() {
    // A whole byte of padding, and padding of zeros.
    assert_eq!(huffman_decode(&hex("6402 ff")), Err(Malformed));
    assert_eq!(huffman_decode(&hex("67")), Ok(b"3".to_vec()));
    assert_eq!(huffman_decode(&hex("64")), Err(Malformed));
    // EOS itself (30 ones).
    assert_eq!(huffman_decode(&hex("ffff ffff")), Err(Malformed));
}

#[test]
fn rfc_request_sequences_pass_unchanged_and_keep_the_table() {
    // C.3 (literals) and C.4 (Huffman): three requests on one connection.
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut mirror = Mirror::default();
        for block in blocks {
            assert_eq!(mirror.rewrite(&hex(block)), Ok(None));
        }
        // RFC 7541 C.3.3: three entries, 164 octets.
        assert_eq!(mirror.entries.len(), 3);
        assert_eq!(mirror.size, 164);
        assert!(mirror.entries[2].authority);
        assert!(!mirror.entries[0].authority);
    }
}

fn literal_indexed_authority(value: &[u8], huffman: bool) -> Vec<u8> {
    let mut block = hex("8386"); // :method POST, :scheme http
    block.push(0x41); // literal with incremental indexing, name :authority
    let body = if huffman {
        huffman_encode(value)
    } else {
        value.to_vec()
    };
    encode_int(&mut block, body.len(), 7, if huffman { 0x80 } else { 0 });
    block.extend_from_slice(&body);
    block.extend_from_slice(&hex("84")); // :path /
    block
}

#[test]
fn a_percent_encoded_socket_path_is_mended_in_place_with_its_length() {
    for huffman in [false, true] {
        let mut mirror = Mirror::default();
        let path = b"%2Frun%2Fvaultd%2Fvaultd.sock";
        let mended = mirror
            .rewrite(&literal_indexed_authority(path, huffman))
            .expect("walks")
            .expect("changed");
        let mut expected = hex("8386 41");
        expected.push(u8::try_from(path.len()).expect("len"));
        expected.extend_from_slice(b"-2Frun-2Fvaultd-2Fvaultd.sock");
        expected.extend_from_slice(&hex("84"));
        assert_eq!(mended, expected);
        // The entry h2 gets is the size the client counts.
        assert_eq!(mirror.size, 10 + path.len() + 32);
        assert!(mirror.entries[0].authority);
        // The next request names it by index: acceptable as it stands.
        assert_eq!(mirror.rewrite(&hex("8386 be 84")), Ok(None));
        // A literal with its name by that index and a bad value: mended without indexing.
        // Never indexed, name by index 62 (4-bit prefix: 15, then 47).
        let mut block = vec![0x1f, 62 - 15, 0x02];
        block.extend_from_slice(b"/x");
        assert_eq!(
            mirror.rewrite(&block),
            Ok(Some([&[0x11u8, 0x09][..], b"localhost"].concat()))
        );
    }
}

#[test]
fn raw_paths_and_literal_names_are_mended_too() {
    let mut mirror = Mirror::default();
    // Without indexing, name spelled out (Huffman), value a raw socket path.
    let mut block = vec![0x00];
    let name = huffman_encode(b":authority");
    encode_int(&mut block, name.len(), 7, 0x80);
    block.extend_from_slice(&name);
    encode_int(&mut block, 17, 7, 0);
    block.extend_from_slice(b"/run/vaultd/x.soc");
    assert_eq!(
        mirror.rewrite(&block),
        Ok(Some([&[0x01u8, 0x09][..], b"localhost"].concat()))
    );
    // The static `:authority` with its empty value, by index.
    assert_eq!(
        mirror.rewrite(&hex("81 84")),
        Ok(Some([&[0x01u8, 0x09][..], b"localhost", &[0x84]].concat()))
    );
    // An acceptable authority stays as sent; another header with a slash is none of ours.
    let mut block = vec![0x01, 0x09];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x0f, 0x2b, 0x02]); // user-agent (58 = 15 + 43)
    block.extend_from_slice(b"a/");
    assert_eq!(mirror.rewrite(&block), Ok(None));
}

#[test]
fn table_size_updates_evict_and_oversized_ones_are_refused() {
    let mut mirror = Mirror::default();
    assert_eq!(
        mirror.rewrite(&literal_indexed_authority(b"localhost", false)),
        Ok(None)
    );
    assert_eq!(mirror.entries.len(), 1);
    assert_eq!(mirror.rewrite(&hex("20")), Ok(None));
    assert!(mirror.entries.is_empty());
    assert_eq!(mirror.rewrite(&hex("be")), Err(Malformed));
    assert_eq!(mirror.rewrite(&hex("3fe11f")), Ok(None)); // 4096
    assert_eq!(mirror.rewrite(&hex("3fe21f")), Err(Malformed)); // 4097
}

#[test]
fn truncated_blocks_and_empty_indexed_authorities_are_not_followed() {
    let mut mirror = Mirror::default();
    assert_eq!(mirror.rewrite(&hex("41 05 6c6f63")), Err(Malformed));
    assert_eq!(mirror.rewrite(&hex("80")), Err(Malformed));
    assert_eq!(mirror.rewrite(&hex("41 00")), Err(Malformed));
    // Without indexing, an empty one is mended.
    assert_eq!(
        mirror.rewrite(&hex("01 00")),
        Ok(Some([&[0x01u8, 0x09][..], b"localhost"].concat()))
    );
}

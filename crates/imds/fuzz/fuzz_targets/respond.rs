//! Fuzz the request parser and `imds::respond`: arbitrary bytes as one request, under
//! every option combination. The first byte picks the options; `@T` in the input is
//! replaced by a valid token so that authenticated paths are reached too.
#![no_main]

use imds::{Limits, Metadata, Options, ParseOutcome};

const KEY: [u8; 32] = [7; 32];
const NOW: i64 = 1_796_119_200_000;

fn meta(flags: u8) -> Metadata {
    Metadata {
        options: Options {
            tokens_required: flags & 1 != 0,
            endpoint_enabled: flags & 2 == 0,
            tags_enabled: flags & 4 != 0,
        },
        instance_id: "i-0123456789abcdef0".into(),
        mac: "02:00:00:00:00:01".into(),
        public_ipv4: (flags & 8 != 0).then(|| "203.0.113.1".into()),
        public_keys: vec![("k".into(), "ssh-ed25519 AAAA k".into())],
        block_devices: vec![("root".into(), "/dev/xvda".into())],
        user_data: (flags & 16 != 0).then(|| b"data".to_vec()),
        tags: vec![("Name".into(), "x".into()), ("a/b".into(), "y".into())],
        product_codes: if flags & 32 != 0 {
            vec!["p".into()]
        } else {
            vec![]
        },
        ..Metadata::default()
    }
}

fn with_token(data: &[u8]) -> Vec<u8> {
    let token = imds::mint_token(&KEY, "i-0123456789abcdef0", (NOW + 60_000) as u64);
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"@T") {
            out.extend_from_slice(token.as_bytes());
            i += 2;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let request = with_token(rest);
    let m = meta(flags);
    let meta = (flags & 64 == 0).then_some(&m);
    let response = imds::respond(&request, meta, &KEY, NOW);
    assert!(matches!(
        response.status,
        200 | 400 | 401 | 403 | 404 | 405 | 413 | 431 | 501
    ));
    let wire = response.to_bytes(NOW);
    let header = format!("Content-Length: {}\r\n", response.body.len());
    assert!(wire.windows(header.len()).any(|w| w == header.as_bytes()));
    // A complete head parses the same when cut right after it.
    if let ParseOutcome::Complete { head_len, .. } =
        imds::parse_request(&request, &Limits::default())
    {
        match imds::parse_request(&request[..head_len], &Limits::default()) {
            ParseOutcome::Complete {
                head_len: again, ..
            } => assert_eq!(again, head_len),
            other => panic!("prefix parsed differently: {other:?}"),
        }
    }
});

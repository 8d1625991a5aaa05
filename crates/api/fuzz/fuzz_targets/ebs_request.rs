//! Fuzz the EBS direct request parsing (`api::ebs_parse_request`: the route, path ids and
//! block index, paging query parameters, block headers and the StartSnapshot JSON body).
//!
//! Input: text with the method and the path-and-query on the first two lines, then
//! `Name: value` header lines up to an empty line, then the body. Checks that nothing
//! panics, and that errors are client errors (4xx) for what parsed as a request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("/");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.to_owned(), v.trim_start().to_owned())
        })
        .collect();
    // Raw bytes reach the JSON parser too (the text above is lossy).
    let raw_body = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(&[][..], |i| &data[i + 2..]);
    for body in [body.as_bytes(), raw_body] {
        if let Err(e) = api::ebs_parse_request(method, target, &headers, body)
            && let Some(status) = e.split(' ').next().and_then(|s| s.parse::<u16>().ok())
        {
            assert!((400..500).contains(&status), "{e}");
        }
    }
});

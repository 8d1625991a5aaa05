//! Fuzz the query-protocol parameter parser: `awsquery::Params::parse` on arbitrary form
//! bytes (a NUL byte splits them into the query string and the body, the two sources a
//! request has), then every accessor (`strings`, `structs`, `map`, `tags`, `int`,
//! `int_in`, `float`, `bool`, `nested`) on every dotted prefix of every name sent.
//! Checks that nothing panics and that lists stay within the parser's limit.
#![no_main]

use std::collections::BTreeSet;

use awsquery::Params;

fn prefixes(params: &Params) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in params.names().take(64) {
        let mut end = 0;
        for part in name.split('.') {
            end += part.len();
            out.insert(name[..end].to_owned());
            end += 1;
        }
    }
    out
}

fn exercise(params: &Params, depth: u8) {
    for p in prefixes(params).iter().take(128) {
        if let Ok(list) = params.strings(p) {
            assert!(list.len() <= 1000);
        }
        let _ = params.strings_if_sent(p);
        let _ = params.map(p);
        let _ = params.tags(p);
        let _ = params.int(p);
        let _ = params.int_in(p, -5, 1000);
        let _ = params.float(p);
        let _ = params.bool(p);
        let _ = params.has(p);
        let nested = params.nested(p);
        if let Ok(structs) = params.structs(p) {
            assert!(structs.len() <= 1000);
            if depth > 0 {
                for s in structs.iter().take(4) {
                    exercise(s, depth - 1);
                }
            }
        }
        if depth > 0 && !nested.is_empty() {
            exercise(&nested, depth - 1);
        }
    }
    let _ = (params.action(), params.version());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let sources: Vec<&[u8]> = data.splitn(2, |&b| b == 0).collect();
    let Ok(params) = Params::parse(&sources) else {
        return;
    };
    exercise(&params, 1);
});

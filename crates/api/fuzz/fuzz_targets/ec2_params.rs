//! Fuzz the EC2 query parameter parser, `api::params::Params::parse`, on arbitrary form
//! bytes (a NUL byte splits them into the query string and the body), then its list,
//! filter, tag and paging accessors on every dotted prefix of every name sent. Checks that
//! nothing panics.
#![no_main]

use std::collections::BTreeSet;

use api::params::Params;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let sources: Vec<&[u8]> = data.splitn(2, |&b| b == 0).collect();
    let Ok(params) = Params::parse(&sources) else {
        return;
    };
    let mut prefixes = BTreeSet::new();
    for name in params.names().take(64) {
        let mut end = 0;
        for part in name.split('.') {
            end += part.len();
            prefixes.insert(name[..end].to_owned());
            end += 1;
        }
    }
    let _ = params.filters();
    let _ = params.page();
    let _ = params.tag_specifications();
    for p in prefixes.iter().take(128) {
        let _ = params.indexes(p);
        let _ = params.list(p);
        let _ = params.filters_named(p);
        let _ = params.tags(p);
        let _ = params.optional_value_tags(p);
        let _ = params.int(p);
        let _ = params.bool(p);
        let _ = params.required(p);
        let nested = params.with_prefix(p);
        let _ = nested.list("");
        let _ = nested.tags("Tag");
    }
});

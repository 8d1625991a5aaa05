//! Fuzz what the console parses of untrusted bytes: form bodies and query strings
//! (`webconsole::Form`), `Cookie` headers (`webconsole::session::cookie`) and the POST
//! paths the audit log names actions from (`webconsole::audit::action_of`), and the launch
//! wizard's body, multipart or URL-encoded (`webconsole::fuzz_launch_form`).
//!
//! Input: the whole input is parsed as a form body; it is also read (lossily, as UTF-8)
//! as a `Cookie` header and as a path. Checks: no panic; a form field's value is the last
//! one sent and `opt` is its trimmed non-empty value; a cookie found by name appears in
//! the header as `name=value`; a resource id named from a path is a segment of it.
#![no_main]

use webconsole::Form;
use webconsole::session::{COOKIE, SIGNIN_COOKIE, cookie};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    let pairs: Vec<(String, String)> = form_pairs(data);
    for (name, _) in &pairs {
        let last = pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        assert_eq!(form.get(name), last);
        let trimmed = last.trim();
        assert_eq!(
            form.opt(name).as_deref(),
            (!trimmed.is_empty()).then_some(trimmed)
        );
    }
    let _ = form.confirmed("fuzz");

    let text = String::from_utf8_lossy(data);
    for name in [COOKIE, SIGNIN_COOKIE, "", "a"] {
        if let Some(value) = cookie(&text, name) {
            assert!(text.contains(&format!("{name}={value}")));
        }
    }

    for content_type in [
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data; boundary=\"a b\"",
        "application/x-www-form-urlencoded",
    ] {
        let _ = webconsole::fuzz_launch_form(content_type, data);
    }

    let (service, action, id) = webconsole::audit::action_of(&text);
    assert!(!service.is_empty() && !action.is_empty());
    if let Some(id) = id {
        assert!(text.split('/').any(|seg| seg == id));
    }
});

/// The pairs a form body holds, in order (decoded the way `Form::parse` decodes them).
fn form_pairs(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut it = p.splitn(2, |&b| b == b'=');
            let name = it.next().unwrap_or(b"");
            let value = it.next().unwrap_or(b"");
            (decode(name), decode(value))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, invalid
/// UTF-8 becomes U+FFFD.
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() && hex(s[i + 1]).is_some() && hex(s[i + 2]).is_some() => {
                out.push(hex(s[i + 1]).unwrap_or(0) * 16 + hex(s[i + 2]).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

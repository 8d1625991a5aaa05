//! Extraction of the SigV4 authentication data from a request: either the
//! `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` header
//! with `X-Amz-Date` (or `Date`), or the `X-Amz-*` query parameters of a presigned URL.
//!
//! Only the syntax is checked here; scope, time and signature are checked by `verify`.

use crate::canonical::{ALGORITHM, percent_decode, raw_query_pairs};
use crate::time::{format_amz, parse_amz, parse_http_date};
use crate::{AuthError, RequestParts};

/// The longest validity of a presigned URL SigV4 allows: seven days.
pub(crate) const MAX_EXPIRES_SECS: u64 = 604_800;

/// The parsed credential scope `keyid/date/region/service/terminator`.
#[derive(Debug)]
pub(crate) struct Credential {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
}

/// Everything needed to check a request's signature.
#[derive(Debug)]
pub(crate) struct AuthInput {
    /// `None` for the `Authorization` header; `Some(expires)` for query authentication,
    /// with `X-Amz-Expires` if present.
    pub query_auth: Option<Option<u64>>,
    pub credential: Credential,
    /// Lower-case, sorted, unique; contains `host`.
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// Unix seconds of the request timestamp.
    pub signed_at: u64,
    pub security_token: Option<String>,
}

impl AuthInput {
    /// The request timestamp in the ISO 8601 basic format of the string to sign.
    pub fn amz_date(&self) -> String {
        format_amz(self.signed_at)
    }
}

/// The query parameters that mark a request as using query-string authentication.
const QUERY_AUTH_MARKERS: [&str; 3] = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"];

/// Finds and parses the request's SigV4 authentication data.
pub(crate) fn extract(req: &RequestParts<'_>) -> Result<AuthInput, AuthError> {
    let authorization = single_header(req.headers, "authorization", "Authorization")?;
    let params: Vec<(String, String)> = raw_query_pairs(req.query)
        .map(|(name, value)| (decode_lossy(name), decode_lossy(value)))
        .collect();
    let query_auth = params
        .iter()
        .any(|(name, _)| QUERY_AUTH_MARKERS.contains(&name.as_str()));
    match (authorization, query_auth) {
        (Some(_), true) => Err(AuthError::AmbiguousAuthentication),
        (Some(value), false) => from_header(value, req.headers),
        (None, true) => from_query(&params),
        (None, false) => Err(AuthError::MissingAuthentication),
    }
}

fn from_header(value: &str, headers: &[(String, String)]) -> Result<AuthInput, AuthError> {
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(malformed(format!(
                "component '{part}' is not of the form key=value"
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val.trim()).is_some() {
            return Err(malformed(format!(
                "'{}' is given more than once",
                key.trim()
            )));
        }
    }
    let credential = credential.filter(|v| !v.is_empty());
    let signed_headers = signed_headers.filter(|v| !v.is_empty());
    let signature = signature.filter(|v| !v.is_empty());
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        let missing: Vec<String> = [
            ("Credential", credential.is_none()),
            ("SignedHeaders", signed_headers.is_none()),
            ("Signature", signature.is_none()),
        ]
        .iter()
        .filter(|(_, absent)| *absent)
        .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
        .collect();
        return Err(malformed(missing.join(" ")));
    };
    let signed_at = match single_header(headers, "x-amz-date", "X-Amz-Date")? {
        Some(v) => parse_amz(v.trim()).ok_or_else(|| bad_date(v))?,
        None => match single_header(headers, "date", "Date")? {
            Some(v) => parse_http_date(v)
                .or_else(|| parse_amz(v.trim()))
                .ok_or_else(|| bad_date(v))?,
            None => return Err(AuthError::MissingDate),
        },
    };
    Ok(AuthInput {
        query_auth: None,
        credential: parse_credential(credential)?,
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: signature.to_owned(),
        signed_at,
        security_token: single_header(headers, "x-amz-security-token", "X-Amz-Security-Token")?
            .map(|t| t.trim().to_owned()),
    })
}

fn from_query(params: &[(String, String)]) -> Result<AuthInput, AuthError> {
    let algorithm = required_param(params, "X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }
    let credential = required_param(params, "X-Amz-Credential")?;
    let signed_headers = required_param(params, "X-Amz-SignedHeaders")?;
    let signature = required_param(params, "X-Amz-Signature")?;
    let date = required_param(params, "X-Amz-Date")?;
    let signed_at = parse_amz(date).ok_or_else(|| bad_date(date))?;
    let expires = match single_param(params, "X-Amz-Expires")? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|secs| (1..=MAX_EXPIRES_SECS).contains(secs))
                .ok_or_else(|| AuthError::InvalidExpires {
                    value: v.to_owned(),
                })?,
        ),
    };
    Ok(AuthInput {
        query_auth: Some(expires),
        credential: parse_credential(credential)?,
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: signature.to_owned(),
        signed_at,
        security_token: single_param(params, "X-Amz-Security-Token")?.map(str::to_owned),
    })
}

/// Parses `keyid/date/region/service/terminator`; every element must be non-empty.
fn parse_credential(credential: &str) -> Result<Credential, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let &[access_key_id, date, region, service, terminator] = parts.as_slice() else {
        return Err(AuthError::MalformedCredential {
            credential: credential.to_owned(),
        });
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(AuthError::MalformedCredential {
            credential: credential.to_owned(),
        });
    }
    Ok(Credential {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        terminator: terminator.to_owned(),
    })
}

/// Parses `a;b;c` into lower-case, sorted, unique names that include `host`.
fn parse_signed_headers(value: &str) -> Result<Vec<String>, AuthError> {
    let malformed = || AuthError::MalformedSignedHeaders {
        value: value.to_owned(),
    };
    let mut names = Vec::new();
    for name in value.split(';') {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b';' | b','));
        if !valid {
            return Err(malformed());
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(malformed());
    }
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::HostNotSigned);
    }
    Ok(names)
}

/// The value of header `name` (lower case) if it appears at most once.
pub(crate) fn single_header<'h>(
    headers: &'h [(String, String)],
    name: &str,
    display: &'static str,
) -> Result<Option<&'h str>, AuthError> {
    let mut found = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(AuthError::Duplicate { name: display });
    }
    Ok(first)
}

fn single_param<'p>(
    params: &'p [(String, String)],
    name: &'static str,
) -> Result<Option<&'p str>, AuthError> {
    let mut found = params
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(AuthError::Duplicate { name });
    }
    Ok(first)
}

fn required_param<'p>(
    params: &'p [(String, String)],
    name: &'static str,
) -> Result<&'p str, AuthError> {
    single_param(params, name)?
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::MissingQueryParameter { name })
}

fn decode_lossy(raw: &str) -> String {
    String::from_utf8_lossy(&percent_decode(raw)).into_owned()
}

fn malformed(reason: String) -> AuthError {
    AuthError::MalformedAuthorization { reason }
}

fn bad_date(value: &str) -> AuthError {
    AuthError::MalformedDate {
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(auth: &str) -> Result<AuthInput, AuthError> {
        let h = headers(&[
            ("Authorization", auth),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Host", "example.amazonaws.com"),
        ]);
        extract(&RequestParts {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        })
    }

    #[test]
    fn parses_authorization_header_in_any_component_order() {
        let input = parse(
            "AWS4-HMAC-SHA256 Signature=abc,SignedHeaders=X-Amz-Date;Host,  \
             Credential=AKID/20150830/us-east-1/ec2/aws4_request",
        )
        .unwrap();
        assert_eq!(input.credential.access_key_id, "AKID");
        assert_eq!(input.credential.service, "ec2");
        assert_eq!(input.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(input.signature, "abc");
        assert_eq!(input.amz_date(), "20150830T123600Z");
        assert!(input.query_auth.is_none());
    }

    #[test]
    fn rejects_malformed_authorization_headers() {
        let cases = [
            ("AWS AKID:c2lnbmF0dXJl", "IncompleteSignature"),
            ("AWS4-HMAC-SHA256", "IncompleteSignature"),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2/aws4_request",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2, SignedHeaders=host, Signature=a",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2/aws4_request, SignedHeaders=x-amz-date, Signature=a",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2/aws4_request, SignedHeaders=host;;x, Signature=a",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=a, Signature=b",
                "IncompleteSignature",
            ),
            ("AWS4-HMAC-SHA256 Credential", "IncompleteSignature"),
        ];
        for (auth, code) in cases {
            let err = parse(auth).unwrap_err();
            assert_eq!(err.aws_code(), code, "{auth}: {err}");
        }
        assert_eq!(
            parse("AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/ec2/aws4_request, SignedHeaders=date, Signature=a")
                .unwrap_err(),
            AuthError::HostNotSigned
        );
    }

    #[test]
    fn query_auth_requires_every_parameter() {
        let full = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20150830%2Fus-east-1%2Fec2%2Faws4_request\
                    &X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=ab&X-Amz-Expires=60";
        let h = headers(&[("host", "h")]);
        let check = |query: &str| {
            extract(&RequestParts {
                method: "GET",
                path: "/",
                query,
                headers: &h,
                body: b"",
            })
        };
        let input = check(full).unwrap();
        assert_eq!(input.query_auth, Some(Some(60)));
        assert_eq!(input.credential.region, "us-east-1");
        for name in [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        ] {
            let query: String = full
                .split('&')
                .filter(|p| !p.starts_with(name))
                .collect::<Vec<_>>()
                .join("&");
            assert_eq!(
                check(&query).unwrap_err(),
                AuthError::MissingQueryParameter { name },
            );
        }
        for bad in ["0", "604801", "-1", "ten"] {
            let query = full.replace("X-Amz-Expires=60", &format!("X-Amz-Expires={bad}"));
            assert_eq!(check(&query).unwrap_err().aws_code(), "IncompleteSignature");
        }
        let twice = format!("{full}&X-Amz-Date=20150830T123600Z");
        assert_eq!(
            check(&twice).unwrap_err(),
            AuthError::Duplicate { name: "X-Amz-Date" }
        );
    }
}

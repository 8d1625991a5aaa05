//! The AWS `query` protocol, as Auto Scaling (2011-01-01) and Elastic Load Balancing v2
//! (2015-12-01) speak it, shared by the service crates above the EC2 engine.
//!
//! ```text
//!   POST /  Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=g1
//!
//!   200  <DescribeAutoScalingGroupsResponse xmlns="…/doc/2011-01-01/">
//!          <DescribeAutoScalingGroupsResult>…<member>…</member>…</DescribeAutoScalingGroupsResult>
//!          <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata>
//!        </DescribeAutoScalingGroupsResponse>
//!   400  <ErrorResponse xmlns="…"><Error><Type>Sender</Type><Code>ValidationError</Code>
//!          <Message>…</Message></Error><RequestId>…</RequestId></ErrorResponse>
//! ```
//!
//! Differences from EC2's dialect that clients depend on: lists are `Name.member.N` in
//! requests and `<member>` in responses, an empty list is sent as `Name=` (read as `[]`),
//! maps are `Name.entry.N.key|value`, and the request id element is `RequestId`.
//!
//! A service implements [`Service`]; the HTTP layer (crates/api) verifies SigV4 for the
//! service's signing name, routes on (signing name, `Version`), runs [`Service::call`] on
//! a blocking thread and wraps its answer with [`response`] or [`error_response`].

mod params;
mod xml;

pub use params::Params;
pub use xml::{Xml, escape};

/// A query-protocol error: `<Error><Type>Sender|Receiver</Type><Code>…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    /// The wire code (the model's `error.code`, e.g. `LoadBalancerNotFound`).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// HTTP status: 400 for sender faults, 500 for ours (and a few codes AWS sends as 429/500).
    pub status: u16,
}

/// A service result.
pub type QueryResult<T> = Result<T, QueryError>;

impl QueryError {
    /// A sender fault (HTTP 400).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            status: 400,
        }
    }

    /// `ValidationError` (HTTP 400), the generic code of both services.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", message)
    }

    /// A missing required parameter, worded as AWS words it.
    pub fn missing(name: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))
    }

    /// A failure on our side (`InternalFailure`, HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: "InternalFailure".into(),
            message: message.into(),
            status: 500,
        }
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// `Sender` for 4xx, `Receiver` for 5xx.
    pub fn fault_type(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Who calls: the verified account and the region of the credential scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// 12-digit account id.
    pub account_id: String,
    /// Region the request addresses.
    pub region: String,
}

/// A service speaking the query protocol.
pub trait Service: Send + Sync + std::fmt::Debug {
    /// The SigV4 signing name (`autoscaling`, `elasticloadbalancing`).
    fn signing_name(&self) -> &'static str;
    /// The API version it serves (`2011-01-01`, `2015-12-01`).
    fn version(&self) -> &'static str;
    /// The XML namespace of its responses.
    fn namespace(&self) -> &'static str;
    /// Runs one action. `Ok(None)` is an operation without output (no `…Result`
    /// element); `Ok(Some(xml))` is the content of `<ActionResult>` (may be empty). Unknown
    /// actions answer `InvalidAction`. Called on a blocking thread.
    fn call(&self, caller: &Caller, action: &str, params: &Params) -> QueryResult<Option<String>>;
}

/// `InvalidAction` for an action a service does not have.
pub fn invalid_action(action: &str, service: &str) -> QueryError {
    QueryError::new(
        "InvalidAction",
        format!("The action {action} is not valid for this web service ({service})."),
    )
}

/// The success envelope of `action`.
pub fn response(action: &str, namespace: &str, result: Option<&str>, request_id: &str) -> String {
    let mut out = String::with_capacity(256 + result.map_or(0, str::len));
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    out.push_str(action);
    out.push_str("Response xmlns=\"");
    out.push_str(&escape(namespace));
    out.push_str("\">");
    if let Some(body) = result {
        out.push('<');
        out.push_str(action);
        out.push_str("Result>");
        out.push_str(body);
        out.push_str("</");
        out.push_str(action);
        out.push_str("Result>");
    }
    out.push_str("<ResponseMetadata><RequestId>");
    out.push_str(&escape(request_id));
    out.push_str("</RequestId></ResponseMetadata></");
    out.push_str(action);
    out.push_str("Response>");
    out
}

/// The error envelope.
pub fn error_response(namespace: &str, e: &QueryError, request_id: &str) -> String {
    let mut x = Xml::new();
    x.elem("Error", |x| {
        x.text("Type", e.fault_type())
            .text("Code", &e.code)
            .text("Message", &e.message);
    })
    .text("RequestId", request_id);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{}\">{}</ErrorResponse>",
        escape(namespace),
        x.finish()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let ok = response("SetDesiredCapacity", "urn:x", None, "r1");
        assert!(ok.contains("<SetDesiredCapacityResponse xmlns=\"urn:x\"><ResponseMetadata><RequestId>r1</RequestId>"));
        assert!(!ok.contains("Result>"));
        let empty = response("AddTags", "urn:x", Some(""), "r2");
        assert!(empty.contains("<AddTagsResult></AddTagsResult>"));
        let e = error_response("urn:x", &QueryError::missing("MinSize"), "r3");
        assert!(e.contains("<Type>Sender</Type><Code>ValidationError</Code>"));
        assert!(e.contains("Value null at &apos;minSize&apos;"));
        assert!(e.ends_with("<RequestId>r3</RequestId></ErrorResponse>"));
        assert_eq!(QueryError::internal("x").fault_type(), "Receiver");
    }
}

//! The XML writer of responses (shared with the query-protocol services).

pub use awsquery::{Xml, escape};

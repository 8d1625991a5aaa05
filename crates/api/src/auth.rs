//! Who sent a request: the one authentication step every protocol the API serves (EC2
//! Query, the other Query services, SSM's JSON, EBS direct's REST) goes through. SigV4 is
//! verified once ([`sigv4::verify`]) against the catalog's access keys, then the key is
//! mapped to its account. Each protocol turns an [`AuthFailure`] into its own error shape.
//!
//! The audit log learns as much as authentication found out ([`Signer`]): the access key
//! id a refused request claimed, or the verified key and its account.

use std::time::SystemTime;

use axum::http::{HeaderMap, Method, Uri};
use sigv4::{AuthError, CredentialLookup, Policy, RequestParts, Secret};

use crate::audit::Event;

/// Looks up secrets in the catalog (unknown or unreadable keys have none). A failed
/// lookup is kept, so that a catalog outage is answered as one (`ServiceUnavailable`)
/// rather than as an unknown key; so is the account of the key found, so that the
/// catalog is asked once per request.
pub(crate) struct CatalogCredentials<'a> {
    catalog: &'a engine::Catalog,
    failure: std::cell::RefCell<Option<engine::Ec2Error>>,
    /// The key looked up last and its account.
    found: std::cell::RefCell<Option<(String, String)>>,
}

impl CredentialLookup for CatalogCredentials<'_> {
    fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
        match self.catalog.access_key(access_key_id) {
            Ok(found) => found.map(|(account, secret)| {
                *self.found.borrow_mut() = Some((access_key_id.to_string(), account));
                Secret::new(secret)
            }),
            Err(e) => {
                tracing::error!(error = %e, "credential lookup failed");
                *self.failure.borrow_mut() = Some(e.into());
                None
            }
        }
    }
}

/// What authentication learnt about the signer, for the audit log.
#[derive(Debug, Default, Clone)]
pub(crate) struct Signer {
    /// The verified access key id, or the one a refused request claimed.
    pub access_key_id: Option<String>,
    /// The account of a verified key.
    pub account_id: Option<String>,
}

impl Signer {
    /// Copies what is known into an audit event.
    pub(crate) fn record(self, event: &mut Event) {
        event.access_key_id = self.access_key_id;
        event.account_id = self.account_id;
    }
}

/// An authenticated request's caller.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    /// The account the access key belongs to.
    pub account_id: String,
    /// The region of the credential scope (one the server serves).
    pub region: String,
}

/// Why a request was not authenticated.
#[derive(Debug)]
pub(crate) enum AuthFailure {
    /// The signature was refused (syntax, scope, time, unknown key, mismatch).
    Signature(AuthError),
    /// The signature verified but the key no longer belongs to an account.
    UnknownKey,
    /// The catalog could not be read.
    Catalog(engine::Ec2Error),
}

/// Verifies `policy`'s SigV4 signature on the request and finds the signer's account.
pub(crate) fn authenticate(
    catalog: &engine::Catalog,
    policy: &Policy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    signer: &mut Signer,
) -> Result<Authenticated, AuthFailure> {
    let header_list = crate::header_pairs(headers);
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &header_list,
        body,
    };
    let credentials = CatalogCredentials {
        catalog,
        failure: std::cell::RefCell::new(None),
        found: std::cell::RefCell::new(None),
    };
    let verified = match sigv4::verify(&parts, policy, SystemTime::now(), &credentials) {
        Ok(v) => v,
        Err(e) => {
            if let Some(failure) = credentials.failure.take() {
                signer.access_key_id = sigv4::claimed_access_key_id(&parts);
                return Err(AuthFailure::Catalog(failure));
            }
            signer.access_key_id = sigv4::claimed_access_key_id(&parts);
            return Err(AuthFailure::Signature(e));
        }
    };
    signer.access_key_id = Some(verified.access_key_id.clone());
    // The account of the key whose secret verified the signature (looked up once).
    let account_id = match credentials.found.take() {
        Some((key, account)) if key == verified.access_key_id => account,
        _ => return Err(AuthFailure::UnknownKey),
    };
    signer.account_id = Some(account_id.clone());
    Ok(Authenticated {
        account_id,
        region: verified.region,
    })
}

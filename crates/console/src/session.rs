//! Console sessions: random 256-bit tokens held in a cookie, a server-side table in memory
//! with idle expiry, and a CSRF token per session.
//!
//! The cookie carries the session token (64 hex digits); the table is keyed by the SHA-256
//! of the token, so a lookup never compares secret bytes and a dump of the table holds no
//! usable token. Every form carries the session's CSRF token in a hidden field `csrf`;
//! [`same_secret`] compares it in constant time. Sessions end on sign-out or after
//! `idle` without a request; a restart of the server ends them all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest;

/// The session cookie's name.
pub const COOKIE: &str = "openami_console";
/// The cookie of the sign-in form (double-submit token before there is a session).
pub const SIGNIN_COOKIE: &str = "openami_console_signin";

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account the access key belongs to.
    pub account_id: String,
    /// The access key id used to sign in (shown on the page).
    pub access_key_id: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// A message for the next page (kind, text): the outcome of the last action.
    pub flash: Option<(Flash, String)>,
    last_seen: Instant,
}

/// What a flash message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flash {
    /// The action succeeded.
    Done,
    /// The action failed (an engine error in words).
    Failed,
}

/// The table of live sessions.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

/// 64 hex digits of fresh randomness (256 bits).
pub fn random_token() -> String {
    hex::encode(engine::ids::random_bytes::<32>())
}

fn key(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two secrets in time that does not depend on where they differ: both are
/// hashed first, so lengths leak nothing either.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (key(a), key(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

impl Sessions {
    /// An empty table whose sessions end after `idle` without a request.
    pub fn new(idle: Duration) -> Self {
        Sessions {
            idle,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for an account; returns its token (for the cookie).
    pub fn create(&self, account_id: &str, access_key_id: &str) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut table = self.lock();
        table.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        table.insert(
            key(&token),
            Session {
                account_id: account_id.to_string(),
                access_key_id: access_key_id.to_string(),
                csrf: random_token(),
                flash: None,
                last_seen: now,
            },
        );
        token
    }

    /// The live session of a token, touched (its idle time starts again); the flash
    /// message is taken out of it. An expired session is removed.
    pub fn get(&self, token: &str) -> Option<Session> {
        if token.len() != 64 {
            return None;
        }
        let k = key(token);
        let now = Instant::now();
        let mut table = self.lock();
        let live = table
            .get(&k)
            .is_some_and(|s| now.duration_since(s.last_seen) < self.idle);
        if !live {
            table.remove(&k);
            return None;
        }
        let s = table.get_mut(&k)?;
        s.last_seen = now;
        let out = s.clone();
        s.flash = None;
        Some(out)
    }

    /// The account and access key of a live session, leaving it as it is (not touched,
    /// its flash message kept).
    pub fn peek(&self, token: &str) -> Option<(String, String)> {
        let now = Instant::now();
        self.lock()
            .get(&key(token))
            .filter(|s| now.duration_since(s.last_seen) < self.idle)
            .map(|s| (s.account_id.clone(), s.access_key_id.clone()))
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, token: &str, kind: Flash, text: String) {
        if let Some(s) = self.lock().get_mut(&key(token)) {
            s.flash = Some((kind, text));
        }
    }

    /// Ends a session (sign-out).
    pub fn remove(&self, token: &str) {
        self.lock().remove(&key(token));
    }

    /// Sessions in the table (expired ones included until the next sign-in sweeps them).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value for the console's path.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut out = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/console");
    if secure {
        out.push_str("; Secure");
    }
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_256_bit_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn sessions_are_found_by_their_token_only() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create("111122223333", "AKIAEXAMPLE");
        let got = s.get(&t).unwrap();
        assert_eq!(got.account_id, "111122223333");
        assert_eq!(got.csrf.len(), 64);
        assert!(s.get(&random_token()).is_none());
        assert!(s.get("short").is_none());
        // A token that differs in one digit is another session (none).
        let mut other = t.clone().into_bytes();
        other[10] = if other[10] == b'0' { b'1' } else { b'0' };
        assert!(s.get(std::str::from_utf8(&other).unwrap()).is_none());
    }

    #[test]
    fn sign_out_and_idle_expiry_end_sessions() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create("111122223333", "AKIA1");
        s.remove(&t);
        assert!(s.get(&t).is_none());
        let short = Sessions::new(Duration::from_millis(20));
        let t = short.create("111122223333", "AKIA1");
        assert!(short.get(&t).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(short.get(&t).is_none());
        assert!(short.is_empty());
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let s = Sessions::new(Duration::from_secs(60));
        let a = s.get(&s.create("111122223333", "AKIA1")).unwrap();
        let b = s.get(&s.create("111122223333", "AKIA1")).unwrap();
        assert_ne!(a.csrf, b.csrf);
        assert!(same_secret(&a.csrf, &a.csrf));
        assert!(!same_secret(&a.csrf, &b.csrf));
        assert!(!same_secret(&a.csrf, ""));
        assert!(!same_secret(&a.csrf, &a.csrf[..63]));
    }

    #[test]
    fn flash_is_shown_once() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create("111122223333", "AKIA1");
        s.flash(&t, Flash::Failed, "InvalidAMIID.NotFound: gone".into());
        assert_eq!(s.get(&t).unwrap().flash.unwrap().0, Flash::Failed);
        assert!(s.get(&t).unwrap().flash.is_none());
    }

    #[test]
    fn peek_leaves_the_session_as_it_is() {
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create("111122223333", "AKIA1");
        s.flash(&t, Flash::Done, "Created vol-1.".into());
        assert_eq!(
            s.peek(&t),
            Some(("111122223333".to_string(), "AKIA1".to_string()))
        );
        assert!(s.peek(&random_token()).is_none());
        assert!(s.get(&t).unwrap().flash.is_some(), "peek kept the flash");
        s.remove(&t);
        assert!(s.peek(&t).is_none());
    }

    #[test]
    fn cookies_parse_and_are_strict() {
        assert_eq!(cookie("a=1; openami_console=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("xopenami_console=abc", COOKIE), None);
        let c = set_cookie(COOKIE, "abc", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(c.contains("Path=/console") && c.ends_with("Secure"));
        assert!(!set_cookie(COOKIE, "abc", false, Some(0)).contains("Secure"));
    }
}

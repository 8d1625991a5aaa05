//! Console sessions: random 256-bit tokens held in a cookie, a server-side table in the
//! catalog with idle expiry, and a CSRF token per session.
//!
//! The cookie carries the session token (64 hex digits); the catalog's `console_sessions`
//! table is keyed by the hex SHA-256 of the token, so a lookup never compares secret
//! bytes and a copy of the database holds no usable token. Because the table is in the
//! catalog, sessions survive a restart of the server, and every server on one
//! (PostgreSQL) catalog knows every session. Every form carries the session's CSRF token
//! in a hidden field `csrf`; [`same_secret`] compares it in constant time.
//!
//! Sessions end on sign-out (the row is deleted) or after `idle` without a request.
//! `last_seen_ms` is written at most once per [`TOUCH_EVERY`] per session (less if `idle`
//! is short), so a session may end up to that much before `idle` has passed since its
//! last request. Expired rows are refused on lookup and purged on every sign-in.
//!
//! Each server keeps a small cache of sessions it has checked; an entry is trusted for
//! [`RECHECK_AFTER`], after which the catalog is asked again. So a sign-out on one server
//! is effective on the others within [`RECHECK_AFTER`] (at once on the server that did
//! it), and a session created on another server is found on its first request (a cache
//! miss always asks the catalog). A catalog that cannot be read makes the request
//! unsigned (the caller sends it to sign in) rather than failing it.
//!
//! Flash messages (the outcome of the last action, shown once on the next page) stay in
//! this server's memory: a restart loses them, and the next page on another server does
//! not show them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::{Catalog, Ec2Error, Ec2Result};
use ring::digest;

/// The session cookie's name.
pub const COOKIE: &str = "openami_console";
/// The cookie of the sign-in form (double-submit token before there is a session).
pub const SIGNIN_COOKIE: &str = "openami_console_signin";

/// A session's `last_seen_ms` is written to the catalog at most this often.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// A cached session is checked against the catalog again after this long (the bound on
/// how long a sign-out on another server takes to reach this one).
pub const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account the access key belongs to.
    pub account_id: String,
    /// The access key id used to sign in (shown on the page); empty after a password
    /// sign-in.
    pub access_key_id: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// A message for the next page (kind, text): the outcome of the last action.
    pub flash: Option<(Flash, String)>,
}

/// What a flash message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flash {
    /// The action succeeded.
    Done,
    /// The action failed (an engine error in words).
    Failed,
}

/// A session as this server last read it from the catalog.
#[derive(Clone, Debug)]
struct Cached {
    account_id: String,
    access_key_id: String,
    csrf: String,
    /// `last_seen_ms` as stored in the catalog (or as this server last wrote it).
    last_seen_ms: i64,
    /// When this entry was read from (or written to) the catalog.
    checked: Instant,
}

/// The sessions: the catalog's table plus this server's cache and flash messages.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    flashes: Mutex<HashMap<String, (Flash, String)>>,
}

/// 64 hex digits of fresh randomness (256 bits).
pub fn random_token() -> String {
    hex::encode(engine::ids::random_bytes::<32>())
}

fn digest32(s: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The catalog key of a token: its SHA-256 in hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(digest32(token))
}

/// Compares two secrets in time that does not depend on where they differ: both are
/// hashed first, so lengths leak nothing either.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (digest32(a), digest32(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// No sessions cached; sessions end after `idle` without a request.
    pub fn new(idle: Duration) -> Self {
        Sessions {
            idle,
            cache: Mutex::new(HashMap::new()),
            flashes: Mutex::new(HashMap::new()),
        }
    }

    /// How often `last_seen_ms` is written: [`TOUCH_EVERY`], or a quarter of `idle` if
    /// that is shorter.
    fn touch_every(&self) -> i64 {
        ms(TOUCH_EVERY.min(self.idle / 4))
    }

    fn recheck_after(&self) -> Duration {
        RECHECK_AFTER.min(self.idle / 4)
    }

    /// Starts a session for an account (`access_key_id` empty after a password sign-in)
    /// and purges the sessions idle too long; returns the token (for the cookie).
    pub fn create(
        &self,
        catalog: &Catalog,
        account_id: &str,
        access_key_id: &str,
    ) -> Ec2Result<String> {
        let token = random_token();
        let hash = token_hash(&token);
        let now = ::catalog::now_ms();
        if let Err(e) = catalog.purge_console_sessions(now - ms(self.idle)) {
            tracing::warn!(error = %e, "purging idle console sessions");
        }
        let row = ::catalog::ConsoleSession {
            token_hash: hash.clone(),
            account_id: account_id.to_string(),
            access_key_id: (!access_key_id.is_empty()).then(|| access_key_id.to_string()),
            csrf: random_token(),
            created_ms: now,
            last_seen_ms: now,
        };
        catalog
            .insert_console_session(&row)
            .map_err(Ec2Error::from)?;
        let mut cache = lock(&self.cache);
        let fresh = self.recheck_after();
        cache.retain(|_, c| c.checked.elapsed() < fresh);
        cache.insert(hash, cached(row));
        Ok(token)
    }

    /// The live session of a token, from the cache or the catalog. An expired session is
    /// deleted. Errors only when the catalog cannot be read.
    fn live(&self, catalog: &Catalog, hash: &str) -> Ec2Result<Option<Cached>> {
        let now = ::catalog::now_ms();
        let hit = lock(&self.cache)
            .get(hash)
            .filter(|c| c.checked.elapsed() < self.recheck_after())
            .cloned();
        let entry = match hit {
            Some(c) => c,
            None => match catalog.console_session(hash).map_err(Ec2Error::from)? {
                Some(row) => cached(row),
                None => {
                    lock(&self.cache).remove(hash);
                    return Ok(None);
                }
            },
        };
        if now - entry.last_seen_ms >= ms(self.idle) {
            lock(&self.cache).remove(hash);
            lock(&self.flashes).remove(hash);
            if let Err(e) = catalog.delete_console_session(hash) {
                tracing::warn!(error = %e, "deleting an expired console session");
            }
            return Ok(None);
        }
        lock(&self.cache).insert(hash.to_string(), entry.clone());
        Ok(Some(entry))
    }

    /// The live session of a token, touched (its idle time starts again; written to the
    /// catalog at most once a minute); the flash message is taken out of it. `Ok(None)`
    /// for no (or an expired) session, an error when the catalog cannot be read.
    pub fn get(&self, catalog: &Catalog, token: &str) -> Ec2Result<Option<Session>> {
        if token.len() != 64 {
            return Ok(None);
        }
        let hash = token_hash(token);
        let Some(entry) = self.live(catalog, &hash)? else {
            return Ok(None);
        };
        let now = ::catalog::now_ms();
        if now - entry.last_seen_ms >= self.touch_every() {
            match catalog.touch_console_session(&hash, now) {
                Ok(true) => {
                    if let Some(c) = lock(&self.cache).get_mut(&hash) {
                        c.last_seen_ms = now;
                    }
                }
                // Deleted meanwhile (signed out on another server).
                Ok(false) => {
                    lock(&self.cache).remove(&hash);
                    return Ok(None);
                }
                // The session was read; a failed touch only shortens its life.
                Err(e) => tracing::warn!(error = %e, "touching a console session"),
            }
        }
        let flash = lock(&self.flashes).remove(&hash);
        Ok(Some(Session {
            account_id: entry.account_id,
            access_key_id: entry.access_key_id,
            csrf: entry.csrf,
            flash,
        }))
    }

    /// The account and access key of a live session, leaving it as it is (not touched,
    /// its flash message kept).
    pub fn peek(&self, catalog: &Catalog, token: &str) -> Ec2Result<Option<(String, String)>> {
        if token.len() != 64 {
            return Ok(None);
        }
        Ok(self
            .live(catalog, &token_hash(token))?
            .map(|c| (c.account_id, c.access_key_id)))
    }

    /// Leaves a message for the session's next page (on this server).
    pub fn flash(&self, token: &str, kind: Flash, text: String) {
        lock(&self.flashes).insert(token_hash(token), (kind, text));
    }

    /// Ends a session (sign-out): its row is deleted, so no server accepts it again.
    pub fn remove(&self, catalog: &Catalog, token: &str) -> Ec2Result<()> {
        let hash = token_hash(token);
        lock(&self.cache).remove(&hash);
        lock(&self.flashes).remove(&hash);
        catalog
            .delete_console_session(&hash)
            .map_err(Ec2Error::from)?;
        Ok(())
    }

    /// Sessions in this server's cache.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }
}

fn cached(row: ::catalog::ConsoleSession) -> Cached {
    Cached {
        account_id: row.account_id,
        access_key_id: row.access_key_id.unwrap_or_default(),
        csrf: row.csrf,
        last_seen_ms: row.last_seen_ms,
        checked: Instant::now(),
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

    fn db() -> Catalog {
        Catalog::in_memory().unwrap()
    }

    #[test]
    fn sessions_are_found_by_their_token_only() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create(&c, "111122223333", "AKIAEXAMPLE").unwrap();
        let got = s.get(&c, &t).unwrap().unwrap();
        assert_eq!(got.account_id, "111122223333");
        assert_eq!(got.access_key_id, "AKIAEXAMPLE");
        assert_eq!(got.csrf.len(), 64);
        assert!(s.get(&c, &random_token()).unwrap().is_none());
        assert!(s.get(&c, "short").unwrap().is_none());
        // A token that differs in one digit is another session (none).
        let mut other = t.clone().into_bytes();
        other[10] = if other[10] == b'0' { b'1' } else { b'0' };
        assert!(
            s.get(&c, std::str::from_utf8(&other).unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_catalog_holds_the_hash_not_the_token() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create(&c, "111122223333", "").unwrap();
        assert!(c.console_session(&t).unwrap().is_none());
        let row = c.console_session(&token_hash(&t)).unwrap().unwrap();
        assert_eq!(row.account_id, "111122223333");
        assert_eq!(row.access_key_id, None, "a password sign-in has no key");
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }

    #[test]
    fn another_server_on_the_catalog_sees_the_session_and_its_sign_out() {
        let c = db();
        let (a, b) = (
            Sessions::new(Duration::from_secs(60)),
            Sessions::new(Duration::from_secs(60)),
        );
        let t = a.create(&c, "111122223333", "AKIA1").unwrap();
        let on_b = b.get(&c, &t).unwrap().unwrap();
        assert_eq!(
            on_b.csrf,
            a.get(&c, &t).unwrap().unwrap().csrf,
            "one CSRF token"
        );
        // A restarted server (an empty cache) finds it too.
        let restarted = Sessions::new(Duration::from_secs(60));
        assert!(restarted.peek(&c, &t).unwrap().is_some());
        a.remove(&c, &t).unwrap();
        assert!(
            a.get(&c, &t).unwrap().is_none(),
            "at once where it happened"
        );
        assert!(c.console_session(&token_hash(&t)).unwrap().is_none());
        // Another server that has never seen it refuses it at once (one that cached it
        // does within RECHECK_AFTER, see the next test).
        let fresh = Sessions::new(Duration::from_secs(60));
        assert!(fresh.get(&c, &t).unwrap().is_none());
    }

    #[test]
    fn a_cached_session_is_rechecked_against_the_catalog() {
        let c = db();
        // idle 400 ms: the cache is trusted for 100 ms.
        let s = Sessions::new(Duration::from_millis(400));
        let t = s.create(&c, "111122223333", "AKIA1").unwrap();
        assert!(s.get(&c, &t).unwrap().is_some());
        // Signed out behind this server's back.
        assert!(c.delete_console_session(&token_hash(&t)).unwrap());
        std::thread::sleep(Duration::from_millis(150));
        assert!(s.get(&c, &t).unwrap().is_none());
        assert_eq!(s.cached(), 0);
    }

    #[test]
    fn sign_out_and_idle_expiry_end_sessions() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create(&c, "111122223333", "AKIA1").unwrap();
        s.remove(&c, &t).unwrap();
        assert!(s.get(&c, &t).unwrap().is_none());
        let short = Sessions::new(Duration::from_millis(200));
        let t = short.create(&c, "111122223333", "AKIA1").unwrap();
        // Requests keep it alive past `idle` (touched at most every 50 ms).
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(60));
            assert!(short.get(&c, &t).unwrap().is_some(), "kept alive");
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(short.get(&c, &t).unwrap().is_none());
        assert!(
            c.console_session(&token_hash(&t)).unwrap().is_none(),
            "an expired session is deleted"
        );
        // A sign-in purges the others that expired.
        let stale = short.create(&c, "111122223333", "AKIA1").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        short.create(&c, "111122223333", "AKIA1").unwrap();
        assert!(c.console_session(&token_hash(&stale)).unwrap().is_none());
    }

    #[test]
    fn touches_are_rare() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(3600));
        let t = s.create(&c, "111122223333", "AKIA1").unwrap();
        let before = c.console_session(&token_hash(&t)).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&c, &t).unwrap().is_some());
        let after = c.console_session(&token_hash(&t)).unwrap().unwrap();
        assert_eq!(before.last_seen_ms, after.last_seen_ms, "not written yet");
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let ta = s.create(&c, "111122223333", "AKIA1").unwrap();
        let tb = s.create(&c, "111122223333", "AKIA1").unwrap();
        let a = s.get(&c, &ta).unwrap().unwrap();
        let b = s.get(&c, &tb).unwrap().unwrap();
        assert_ne!(a.csrf, b.csrf);
        assert!(same_secret(&a.csrf, &a.csrf));
        assert!(!same_secret(&a.csrf, &b.csrf));
        assert!(!same_secret(&a.csrf, ""));
        assert!(!same_secret(&a.csrf, &a.csrf[..63]));
    }

    #[test]
    fn flash_is_shown_once() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create(&c, "111122223333", "AKIA1").unwrap();
        s.flash(&t, Flash::Failed, "InvalidAMIID.NotFound: gone".into());
        assert_eq!(
            s.get(&c, &t).unwrap().unwrap().flash.unwrap().0,
            Flash::Failed
        );
        assert!(s.get(&c, &t).unwrap().unwrap().flash.is_none());
    }

    #[test]
    fn peek_leaves_the_session_as_it_is() {
        let c = db();
        let s = Sessions::new(Duration::from_secs(60));
        let t = s.create(&c, "111122223333", "AKIA1").unwrap();
        s.flash(&t, Flash::Done, "Created vol-1.".into());
        assert_eq!(
            s.peek(&c, &t).unwrap(),
            Some(("111122223333".to_string(), "AKIA1".to_string()))
        );
        assert!(s.peek(&c, &random_token()).unwrap().is_none());
        assert!(
            s.get(&c, &t).unwrap().unwrap().flash.is_some(),
            "peek kept the flash"
        );
        s.remove(&c, &t).unwrap();
        assert!(s.peek(&c, &t).unwrap().is_none());
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

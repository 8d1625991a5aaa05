//! Sign-in throttling: failed sign-ins counted per subject (an account, or an access key)
//! and per client address, in memory.
//!
//! * A subject with [`Limits::per_subject`] failures within [`Limits::window`] is locked
//!   for [`Limits::lockout`] after the last of them: every sign-in for it is refused
//!   without checking the password, the right one too. A successful sign-in clears the
//!   subject's failures.
//! * A client address (an IPv4 address, or the /64 of an IPv6 one) with
//!   [`Limits::per_client`] failures is locked the same way, whatever the subject, so one
//!   client cannot try a few passwords on each of many accounts. A successful sign-in does
//!   not clear the client's other failures (an attacker with one good account could
//!   otherwise reset the count between guesses).
//! * An attempt counts as a failure from the moment it is let through ([`Throttle::attempt`])
//!   until it is known to have succeeded ([`Throttle::succeeded`]), so concurrent guesses
//!   cannot all pass the check before any of them is counted.
//! * Unknown accounts are counted like known ones, so a lockout says nothing about whether
//!   an account exists. Subjects are keyed by the SHA-256 of their name.
//! * The table holds at most [`Limits::capacity`] entries: when full, expired entries are
//!   dropped, then the least recently active unlocked one (else the least recently active).
//!
//! Every method takes the current [`Instant`], so tests drive the clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest;

/// How many failures lock what, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures that lock an account or access key.
    pub per_subject: usize,
    /// Failures that lock a client address.
    pub per_client: usize,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// How long a lock lasts (from the last failure).
    pub lockout: Duration,
    /// Most entries (subjects and clients) the table holds.
    pub capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_subject: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            capacity: 10_000,
        }
    }
}

/// Why an attempt is refused, and for how much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// The account or access key is locked.
    Subject(Duration),
    /// The client address is locked.
    Client(Duration),
}

impl Locked {
    /// The refusal in words, as the sign-in page shows it.
    pub fn message(&self) -> String {
        let (whom, left) = match self {
            Locked::Subject(left) => ("to sign in to this account (or with this access key)", left),
            Locked::Client(left) => ("to sign in from your address", left),
        };
        let minutes = left.as_secs().div_ceil(60).max(1);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        format!("Throttling: too many attempts {whom}; try again in {minutes} {unit}.")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Subject([u8; 32]),
    Client(IpAddr),
}

fn subject_key(subject: &str) -> Key {
    let d = digest::digest(&digest::SHA256, subject.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Key::Subject(out)
}

/// The address a client is counted under: IPv4 (also when mapped into IPv6) as is, IPv6
/// by its /64 (what one host usually holds).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn last_active(&self) -> Option<Instant> {
        self.failures.back().copied().max(self.locked_until)
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        if self.locked_until.is_some_and(|t| t <= now) {
            self.locked_until = None;
        }
    }

    fn is_dead(&self) -> bool {
        self.failures.is_empty() && self.locked_until.is_none()
    }

    /// Time left locked, locking now if `limit` failures are on record.
    fn lock_left(&mut self, now: Instant, limit: usize, lockout: Duration) -> Option<Duration> {
        if self.locked_until.is_none() && self.failures.len() >= limit.max(1) {
            let last = self.failures.back().copied().unwrap_or(now);
            self.locked_until = Some(last + lockout);
            self.failures.clear();
        }
        self.locked_until
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

/// The counters of failed sign-ins.
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    table: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    /// An empty table with these limits.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a sign-in for `subject` from `client` through, counting it as a failure until
    /// [`Throttle::succeeded`] says otherwise; or refuses it, counting nothing.
    pub fn attempt(
        &self,
        subject: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Locked> {
        let l = self.limits;
        let mut table = self.lock();
        let client = client.map(|ip| Key::Client(client_key(ip)));
        if let Some(key) = client
            && let Some(e) = table.get_mut(&key)
        {
            e.prune(now, l.window);
            if let Some(left) = e.lock_left(now, l.per_client, l.lockout) {
                return Err(Locked::Client(left));
            }
        }
        let subject = subject_key(subject);
        if let Some(e) = table.get_mut(&subject) {
            e.prune(now, l.window);
            if let Some(left) = e.lock_left(now, l.per_subject, l.lockout) {
                return Err(Locked::Subject(left));
            }
        }
        for key in [Some(subject), client].into_iter().flatten() {
            if !table.contains_key(&key) {
                make_room(&mut table, l, now);
            }
            table.entry(key).or_default().failures.push_back(now);
        }
        Ok(())
    }

    /// The sign-in [`Throttle::attempt`] let through succeeded: the subject's failures are
    /// forgotten, and the client's count loses this attempt.
    pub fn succeeded(&self, subject: &str, client: Option<IpAddr>) {
        let mut table = self.lock();
        table.remove(&subject_key(subject));
        if let Some(ip) = client
            && let Some(e) = table.get_mut(&Key::Client(client_key(ip)))
        {
            e.failures.pop_back();
            if e.is_dead() {
                table.remove(&Key::Client(client_key(ip)));
            }
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees one place in a full table: expired entries first, then the unlocked entry with
/// the fewest failures (the least recently active of those), else the least recently
/// active one. Fewest failures first, so that flooding the table with one-guess entries
/// cannot push out an account that is close to being locked.
fn make_room(table: &mut HashMap<Key, Entry>, l: Limits, now: Instant) {
    if table.len() < l.capacity.max(2) {
        return;
    }
    table.retain(|_, e| {
        e.prune(now, l.window);
        !e.is_dead()
    });
    if table.len() < l.capacity.max(2) {
        return;
    }
    let victim = table
        .iter()
        .min_by_key(|(_, e)| (e.locked_until.is_some(), e.failures.len(), e.last_active()))
        .map(|(k, _)| *k);
    if let Some(k) = victim {
        table.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn five_failures_lock_the_subject_for_fifteen_minutes() {
        let t = Throttle::new(Limits::default());
        let t0 = Instant::now();
        for i in 0..5 {
            t.attempt("account:111111111111", ip("10.0.0.1"), t0 + i * MIN)
                .unwrap();
        }
        // The sixth is refused (the right password would be too), 15 minutes from the
        // fifth failure (at t0 + 4 min).
        let at = t0 + 5 * MIN;
        assert_eq!(
            t.attempt("account:111111111111", ip("10.0.0.1"), at),
            Err(Locked::Subject(14 * MIN))
        );
        // Other subjects are not affected.
        t.attempt("account:222222222222", ip("10.0.0.1"), at)
            .unwrap();
        // Still locked a second before the end, open after it.
        assert!(
            t.attempt(
                "account:111111111111",
                None,
                t0 + 19 * MIN - Duration::from_secs(1)
            )
            .is_err()
        );
        t.attempt("account:111111111111", None, t0 + 19 * MIN)
            .unwrap();
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = Throttle::new(Limits::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            t.attempt("key:AKIA1", None, t0).unwrap();
        }
        // 15 minutes later those four are forgotten: five more are let through.
        for _ in 0..5 {
            t.attempt("key:AKIA1", None, t0 + 15 * MIN).unwrap();
        }
        assert!(matches!(
            t.attempt("key:AKIA1", None, t0 + 15 * MIN),
            Err(Locked::Subject(left)) if left == 15 * MIN
        ));
    }

    #[test]
    fn success_clears_the_subject_but_not_the_client() {
        let limits = Limits {
            per_client: 6,
            ..Limits::default()
        };
        let t = Throttle::new(limits);
        let t0 = Instant::now();
        for _ in 0..4 {
            t.attempt("name:alice", ip("10.0.0.1"), t0).unwrap();
        }
        t.attempt("name:alice", ip("10.0.0.1"), t0).unwrap();
        t.succeeded("name:alice", ip("10.0.0.1"));
        // alice starts again at zero ...
        for _ in 0..2 {
            t.attempt("name:alice", ip("10.0.0.2"), t0).unwrap();
        }
        // ... while 10.0.0.1 keeps its four failures: two more lock it.
        t.attempt("name:bob", ip("10.0.0.1"), t0).unwrap();
        t.attempt("name:carol", ip("10.0.0.1"), t0).unwrap();
        assert!(matches!(
            t.attempt("name:dave", ip("10.0.0.1"), t0),
            Err(Locked::Client(left)) if left == 15 * MIN
        ));
    }

    #[test]
    fn one_client_cannot_spray_many_accounts() {
        let t = Throttle::new(Limits::default());
        let t0 = Instant::now();
        for i in 0..20 {
            t.attempt(&format!("name:user{i}"), ip("192.0.2.7"), t0)
                .unwrap();
        }
        assert!(matches!(
            t.attempt("name:user99", ip("192.0.2.7"), t0),
            Err(Locked::Client(_))
        ));
        // The same host over IPv4-mapped IPv6 is the same client; another is not.
        assert!(t.attempt("name:x", ip("::ffff:192.0.2.7"), t0).is_err());
        t.attempt("name:x", ip("192.0.2.8"), t0).unwrap();
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn concurrent_guesses_are_counted_before_they_are_checked() {
        // Five attempts let through and still running: the sixth is refused.
        let t = Throttle::new(Limits::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            t.attempt("name:alice", None, t0).unwrap();
        }
        assert!(t.attempt("name:alice", None, t0).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let limits = Limits {
            capacity: 100,
            ..Limits::default()
        };
        let t = Throttle::new(limits);
        let t0 = Instant::now();
        // Lock one subject, then flood with others: the locked one stays.
        for _ in 0..5 {
            t.attempt("name:victim", None, t0).unwrap();
        }
        assert!(t.attempt("name:victim", None, t0).is_err());
        for i in 0..1000u32 {
            t.attempt(
                &format!("name:flood{i}"),
                None,
                t0 + Duration::from_millis(i.into()),
            )
            .unwrap();
        }
        assert!(t.len() <= 100, "{}", t.len());
        assert!(t.attempt("name:victim", None, t0 + MIN).is_err());
        // Expired entries go first.
        assert!(t.attempt("name:late", None, t0 + 40 * MIN).is_ok());
        assert!(t.len() <= 2, "{}", t.len());
    }

    #[test]
    fn a_flood_of_single_guesses_cannot_evict_a_nearly_locked_subject() {
        let limits = Limits {
            capacity: 100,
            ..Limits::default()
        };
        let t = Throttle::new(limits);
        let t0 = Instant::now();
        for _ in 0..4 {
            t.attempt("name:target", None, t0).unwrap();
        }
        for i in 0..1000u32 {
            t.attempt(
                &format!("name:flood{i}"),
                None,
                t0 + Duration::from_millis(i.into()),
            )
            .unwrap();
        }
        // The fifth guess still counts on top of the first four: the next is refused.
        t.attempt("name:target", None, t0 + MIN).unwrap();
        assert!(t.attempt("name:target", None, t0 + MIN).is_err());
    }

    #[test]
    fn messages_say_how_long() {
        assert_eq!(
            Locked::Subject(14 * MIN + Duration::from_secs(1)).message(),
            "Throttling: too many attempts to sign in to this account (or with this access key); try again in 15 minutes."
        );
        assert!(
            Locked::Client(Duration::from_secs(5))
                .message()
                .ends_with("from your address; try again in 1 minute.")
        );
    }
}

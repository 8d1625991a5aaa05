//! Tests of the PostgreSQL backend against a real server (see [`crate::test_postgres`]).

use std::time::{Duration, Instant};

use crate::test_postgres::TestPostgres;
use crate::{Catalog, CatalogError};

fn server() -> TestPostgres {
    TestPostgres::start().unwrap_or_else(|e| panic!("{e}"))
}

/// The conformance suite, two catalogs sharing a database, two nodes migrating at once,
/// and what callers see when the server goes away.
#[test]
fn postgres_backend() {
    let mut pg = server();

    let url = pg.create_database("conformance").unwrap();
    let a = Catalog::open_url(&url).unwrap();
    assert_eq!(a.backend_name(), "postgres");
    crate::conformance::run_all(&a);
    let b = Catalog::open_postgres(&url).unwrap();
    crate::conformance::run_shared(&a, &b);
    crate::conformance::run_concurrent(&a);
    measure(&a, &b);
    drop(b);

    // Two nodes starting at once on an empty database: both open, migrations ran once.
    let url = pg.create_database("race").unwrap();
    let opens: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Catalog::open_postgres(&url))
        })
        .collect();
    let opened: Vec<Catalog> = opens
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = client
        .query("SELECT version FROM schema_version", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get::<_, i64>(0),
        super::schema::MIGRATIONS.len() as i64
    );
    // Reopening an up-to-date database changes nothing.
    drop(Catalog::open_postgres(&url).unwrap());
    drop(opened);
    drop(client);

    // The server goes away: calls fail as unavailable, not as bad requests.
    pg.stop();
    let started = Instant::now();
    let err = a.accounts().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = a.accounts().unwrap_err();
    assert!(err.is_unavailable(), "reconnecting fails too: {err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // It comes back: the next calls reconnect, and data_version moves (the listener
    // reconnected and may have missed changes).
    let v = a.data_version().unwrap();
    pg.restart().unwrap();
    // Every worker lost its connection and checks it before use: no call fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    let accounts = a.accounts().unwrap();
    assert_eq!(accounts.len(), 3, "the data survived the restart");
    for _ in 0..super::WORKERS * 2 {
        a.accounts().unwrap();
    }
    while a.data_version().unwrap() == v {
        assert!(Instant::now() < deadline, "the listener reconnects");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_server_is_unavailable_at_open() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = Catalog::open_url(&format!("postgres://u:secret@127.0.0.1:{port}/db")).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = Catalog::open_url("postgres://127.0.0.1:notaport/db").unwrap_err();
    assert!(matches!(err, CatalogError::BadLocation(_)), "{err}");
}

/// Prints the cost of a read and how long another node's commit takes to move
/// `data_version` (run with `--nocapture` to see the numbers).
fn measure(a: &Catalog, b: &Catalog) {
    let n = 1000;
    let started = Instant::now();
    for _ in 0..n {
        a.resource("vol-none").unwrap();
    }
    let per_read = started.elapsed() / n;
    let mut delays = Vec::new();
    for i in 0..20 {
        let v = b.data_version().unwrap();
        a.set_tags("vol-measure", &[("i".into(), i.to_string())])
            .unwrap();
        let committed = Instant::now();
        while b.data_version().unwrap() == v {
            assert!(committed.elapsed() < Duration::from_secs(5));
            std::hint::spin_loop();
        }
        delays.push(committed.elapsed());
    }
    delays.sort();
    eprintln!(
        "postgres catalog: {per_read:?} per read; data_version moves {:?} (median), {:?} (max) \
         after another catalog's commit",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    a.clear_tags("vol-measure").unwrap();
}

//! Random SQL for the differential and crash tests: a generator of statements over the
//! table `t(id, n, v, pad)` (and `u`), and how a connection answered one.

use rand::rngs::StdRng;
use rand::Rng;
use rusqlite::Connection;

/// What a statement answered: its rows as text, or the error's code.
pub fn answer(c: &Connection, sql: &str) -> Result<Vec<String>, String> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare(sql)?;
        let n = st.column_count();
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let cols: Vec<String> = (0..n)
                .map(|i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into(),
                    Ok(v) => format!("{v:?}"),
                    Err(e) => format!("<{e}>"),
                })
                .collect();
            out.push(cols.join("|"));
        }
        Ok(out)
    };
    run().map_err(|e| match e.sqlite_error_code() {
        Some(code) => format!("{code:?}"),
        None => e.to_string(),
    })
}

/// A statement and which connection runs it; `compare` is false where only success or
/// failure must agree (checkpoint counters depend on frame layout details).
pub struct Step {
    pub on_b: bool,
    pub sql: String,
    pub compare: bool,
}

pub fn step(on_b: bool, sql: impl Into<String>) -> Step {
    Step {
        on_b,
        sql: sql.into(),
        compare: true,
    }
}

/// The next random statement (or a few, for a transaction).
pub fn next_steps(rng: &mut StdRng, b_in_txn: bool) -> Vec<Step> {
    // Deterministic content (SQLite's random() would differ between the two sides).
    let row = |rng: &mut StdRng| {
        let n: i64 = rng.random_range(0..1000);
        let len: usize = rng.random_range(0..1500);
        let text: String = (0..len / 4)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        format!("({n}, '{n}-{text}', zeroblob({len}))")
    };
    let write = |rng: &mut StdRng| -> String {
        match rng.random_range(0..6) {
            0 | 1 => {
                let k = rng.random_range(1..20);
                let rows: Vec<String> = (0..k).map(|_| row(rng)).collect();
                format!("INSERT INTO t(n, v, pad) VALUES {}", rows.join(","))
            }
            2 => format!(
                "INSERT INTO t(n, v, pad) SELECT n + 1, v || 'x', pad FROM t WHERE n % {} = 0 LIMIT 200",
                rng.random_range(3..30)
            ),
            3 => format!(
                "UPDATE t SET v = v || '{}', pad = zeroblob({}) WHERE n % {} = {}",
                rng.random_range(0..9),
                rng.random_range(0..3000),
                rng.random_range(2..9),
                rng.random_range(0..2)
            ),
            4 => format!(
                "DELETE FROM t WHERE n % {} = {}",
                rng.random_range(3..12),
                rng.random_range(0..3)
            ),
            _ => format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY n, id LIMIT {})",
                rng.random_range(0..30)
            ),
        }
    };
    match rng.random_range(0..120) {
        0..=39 => vec![step(false, write(rng))],
        40..=49 => {
            let mut v = vec![step(false, "BEGIN")];
            for _ in 0..rng.random_range(1..6) {
                v.push(step(false, write(rng)));
            }
            v.push(step(
                false,
                if rng.random_bool(0.7) {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                },
            ));
            v
        }
        50..=54 => {
            let mut v = vec![step(false, "SAVEPOINT s1"), step(false, write(rng))];
            v.push(step(false, "SAVEPOINT s2"));
            v.push(step(false, write(rng)));
            v.push(step(false, "ROLLBACK TO s2"));
            v.push(step(false, write(rng)));
            v.push(step(
                false,
                if rng.random_bool(0.5) {
                    "RELEASE s1"
                } else {
                    "ROLLBACK TO s1"
                },
            ));
            v.push(step(false, "RELEASE s1"));
            v
        }
        55..=64 => {
            let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.random_range(0..4)];
            vec![Step {
                on_b: false,
                sql: format!("PRAGMA wal_checkpoint({mode})"),
                compare: false,
            }]
        }
        65..=69 => {
            let mode = ["WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY"][rng.random_range(0..5)];
            vec![step(false, format!("PRAGMA journal_mode={mode}"))]
        }
        70..=71 => vec![step(false, "VACUUM")],
        72..=74 => vec![step(
            false,
            if rng.random_bool(0.5) {
                "CREATE INDEX IF NOT EXISTS t_v ON t(v)"
            } else {
                "DROP INDEX IF EXISTS t_v"
            },
        )],
        75..=76 => vec![step(false, "PRAGMA incremental_vacuum(20)")],
        77..=84 => vec![step(
            true,
            "SELECT count(*), sum(n), sum(length(pad)) FROM t",
        )],
        85..=89 if !b_in_txn => vec![
            step(true, "BEGIN"),
            step(true, "SELECT count(*), sum(n) FROM t"),
        ],
        85..=89 => vec![
            step(true, "SELECT count(*), sum(n) FROM t"),
            step(true, "COMMIT"),
        ],
        90..=93 => vec![
            step(
                false,
                format!("PRAGMA user_version={}", rng.random_range(0..1_000_000)),
            ),
            step(true, "PRAGMA user_version"),
        ],
        94..=97 => vec![step(
            false,
            match rng.random_range(0..3) {
                0 => "CREATE TABLE IF NOT EXISTS u(x BLOB)".to_string(),
                1 => format!(
                    "INSERT INTO u SELECT zeroblob({}) FROM t LIMIT {}",
                    rng.random_range(0..5000),
                    rng.random_range(0..50)
                ),
                _ => "DROP TABLE IF EXISTS u".to_string(),
            },
        )],
        // The second connection writes too (BUSY, or BUSY_SNAPSHOT after an old read, alike).
        98..=101 => vec![step(true, write(rng))],
        102..=104 => vec![step(false, REOPEN)],
        105..=109 => vec![step(
            false,
            format!(
                "INSERT INTO t(n, v, pad) VALUES ({}, 'big', zeroblob({}))",
                rng.random_range(0..1000),
                rng.random_range(10_000..200_000)
            ),
        )],
        _ => vec![step(false, "PRAGMA journal_mode")],
    }
}

/// Not SQL: close both connections on both sides (the VFS publishes at the last close)
/// and open them again.
pub const REOPEN: &str = "<reopen>";

/// What two databases must agree on: the rows of `t`, `u` and the header's user version.
pub const STATE: [&str; 3] = [
    "SELECT id, n, v, length(pad) FROM t ORDER BY id",
    "SELECT count(*), sum(length(x)) FROM u",
    "PRAGMA user_version",
];

/// Whether `a` and `b` hold the same [`STATE`].
pub fn same(a: &Connection, b: &Connection) -> bool {
    STATE.iter().all(|q| answer(a, q) == answer(b, q))
}

/// A seed's connection set-up: page size, auto-vacuum, cache size, `synchronous` (one of
/// `levels`), sometimes `locking_mode=EXCLUSIVE`, WAL or rollback mode, and the table `t`.
/// Returns the statements and whether the locking is exclusive.
pub fn setup(rng: &mut StdRng, levels: &[&str]) -> (Vec<String>, bool) {
    let mut s = vec![
        format!(
            "PRAGMA page_size={}",
            [1024, 4096, 8192][rng.random_range(0..3)]
        ),
        format!(
            "PRAGMA auto_vacuum={}",
            ["NONE", "FULL", "INCREMENTAL"][rng.random_range(0..3)]
        ),
        format!(
            "PRAGMA cache_size={}",
            [5, 50, 2000][rng.random_range(0..3)]
        ),
        format!(
            "PRAGMA synchronous={}",
            levels[rng.random_range(0..levels.len())]
        ),
    ];
    let exclusive = rng.random_bool(0.25);
    if exclusive {
        s.push("PRAGMA locking_mode=EXCLUSIVE".into());
    }
    s.push(format!(
        "PRAGMA journal_mode={}",
        if rng.random_bool(0.6) {
            "WAL"
        } else {
            "DELETE"
        }
    ));
    s.push(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, v TEXT NOT NULL, pad BLOB)"
            .into(),
    );
    (s, exclusive)
}

pub fn check_rows(want: &Connection, got: &Connection, what: &str, log: &[String]) {
    for q in STATE {
        let (w, g) = (answer(want, q), answer(got, q));
        assert!(
            w == g,
            "{what}: `{q}` differs ({} local, {} through the VFS)\n{}",
            w.as_ref()
                .map_or_else(|e| format!("error {e}"), |r| format!("{} rows", r.len())),
            g.as_ref()
                .map_or_else(|e| format!("error {e}"), |r| format!("{} rows", r.len())),
            log.join("\n")
        );
    }
}

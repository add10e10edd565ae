//! One replica root, one database. Two `SqliteDatabase`s whose replica roots are equal or
//! nested (after normalisation, see [`crds::ReplicaRoot`]) would have two writer Leases
//! over one history, and deleting one with `deletionPolicy: Delete` would remove the
//! other's objects. The database that was created first keeps the root; a later one is
//! refused (condition, Event, and the webhook denies its pods); nothing is deleted while
//! any other database overlaps.

use kube::ResourceExt;

use crds::SqliteDatabase;

/// Another database whose replica root overlaps this one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// `namespace/name` of the other database.
    pub other: String,
    namespace: String,
    name: String,
    /// The other database's normalised root.
    pub root: String,
    /// True when the other database was there first (it keeps the root).
    pub earlier: bool,
}

impl Overlap {
    /// The other database as a reader in namespace `viewer` may learn of it: by name in
    /// the same namespace; otherwise only that one exists (conditions, Events and webhook
    /// refusals are read by the namespace's users, who may not see other namespaces).
    pub fn describe(&self, viewer: &str) -> String {
        if self.namespace == viewer {
            format!("SqliteDatabase {} (replica root {})", self.name, self.root)
        } else {
            "a SqliteDatabase in another namespace".to_string()
        }
    }

    /// Why `mine` (a root in namespace `viewer`) is refused.
    pub fn message(&self, mine: &str, viewer: &str) -> String {
        format!(
            "replica root {mine} is the same as or nested with that of {}, which {}; \
             two databases must not share or nest replica roots: choose another path",
            self.describe(viewer),
            if self.earlier {
                "was created first and keeps it"
            } else {
                "was created later"
            }
        )
    }
}

fn key(db: &SqliteDatabase) -> String {
    format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any())
}

/// Order of claims: creation time, then `namespace/name` (a tie-breaker every reader of
/// the same objects agrees on).
fn claimed_before(a: &SqliteDatabase, b: &SqliteDatabase) -> bool {
    let t = |d: &SqliteDatabase| d.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match (t(a), t(b)) {
        (Some(x), Some(y)) if x != y => x < y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => key(a) < key(b),
    }
}

/// Every other database in `all` whose root overlaps `db`'s, earlier claims first.
pub fn overlaps<'a>(
    db: &SqliteDatabase,
    all: impl IntoIterator<Item = &'a SqliteDatabase>,
) -> Vec<Overlap> {
    let Some(mine) = db.spec.replica.root() else {
        return Vec::new();
    };
    let me = key(db);
    let mut found: Vec<(&SqliteDatabase, Overlap)> = all
        .into_iter()
        .filter(|o| key(o) != me)
        .filter_map(|o| {
            let root = o.spec.replica.root()?;
            root.overlaps(&mine).then(|| {
                (
                    o,
                    Overlap {
                        other: key(o),
                        namespace: o.namespace().unwrap_or_default(),
                        name: o.name_any(),
                        root: root.to_string(),
                        earlier: claimed_before(o, db),
                    },
                )
            })
        })
        .collect();
    found.sort_by(|a, b| {
        if claimed_before(a.0, b.0) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    found.into_iter().map(|(_, o)| o).collect()
}

/// The database that keeps the root `db` wants, when it is not `db`.
pub fn refused_by<'a>(
    db: &SqliteDatabase,
    all: impl IntoIterator<Item = &'a SqliteDatabase>,
) -> Option<Overlap> {
    overlaps(db, all).into_iter().find(|o| o.earlier)
}

/// Why `db` (in namespace `viewer`) may not use its replica root, or `None` when it may.
pub fn refusal<'a>(
    db: &SqliteDatabase,
    all: impl IntoIterator<Item = &'a SqliteDatabase>,
    viewer: &str,
) -> Option<String> {
    let o = refused_by(db, all)?;
    let mine = db
        .spec
        .replica
        .root()
        .map(|r| r.to_string())
        .unwrap_or_default();
    Some(o.message(&mine, viewer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn db(ns: &str, name: &str, path: &str, created: i64) -> SqliteDatabase {
        let mut d: SqliteDatabase = serde_json::from_value(serde_json::json!({
            "apiVersion": "sqlitekube.dev/v1alpha1",
            "kind": "SqliteDatabase",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replica": {"s3": {"bucket": "bkt", "path": path}}}
        }))
        .unwrap();
        d.metadata.creation_timestamp = Some(Time(
            jiff::Timestamp::from_second(1_700_000_000 + created).unwrap(),
        ));
        d
    }

    #[test]
    fn the_first_claim_keeps_the_root_across_namespaces_and_spellings() {
        let a = db("shop", "orders", "apps/orders", 0);
        let b = db("other", "copy", "apps//orders/", 10);
        let c = db("shop", "all", "apps", 20);
        let d = db("shop", "users", "apps/users", 5);
        let all = [a.clone(), b.clone(), c.clone(), d.clone()];
        assert_eq!(refused_by(&a, &all), None, "the first one is never refused");
        assert_eq!(
            refused_by(&d, &all),
            None,
            "a sibling prefix is its own root"
        );
        assert_eq!(refused_by(&b, &all).unwrap().other, "shop/orders");
        let by = refused_by(&c, &all).unwrap();
        assert_eq!(
            by.other, "shop/orders",
            "the earliest overlapping claim is named"
        );
        let m = by.message("s3:///bkt/apps", "shop");
        assert!(
            m.contains("created first") && m.contains("SqliteDatabase orders"),
            "{m}"
        );
        let m = refused_by(&b, &all)
            .unwrap()
            .message("s3:///bkt/apps/orders", "other");
        assert!(
            m.contains("another namespace") && !m.contains("shop"),
            "another namespace's database is not named: {m}"
        );
        // For deletion, every overlap counts, earlier or later.
        let names: Vec<_> = overlaps(&a, &all).into_iter().map(|o| o.other).collect();
        assert_eq!(names, ["other/copy", "shop/all"]);
    }
}

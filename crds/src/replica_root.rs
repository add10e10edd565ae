//! Where a database's replica lives, normalised so that two specs naming the same place in
//! different spellings (`a//b/`, `./a/b`, `a/x/../b`, a trailing slash on the endpoint, an
//! upper-case bucket) compare equal. Two databases whose roots are equal or nested would
//! write into, list, or (with `deletionPolicy: Delete`) delete each other's objects.

use std::fmt;

use crate::spec::ReplicaSpec;

/// A replica root: the store (scheme, endpoint, bucket or container) and the path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRoot {
    store: String,
    path: Vec<String>,
}

impl ReplicaRoot {
    /// True when the two roots are the same or one lies inside the other.
    pub fn overlaps(&self, other: &ReplicaRoot) -> bool {
        if self.store != other.store {
            return false;
        }
        let n = self.path.len().min(other.path.len());
        self.path[..n] == other.path[..n]
    }
}

impl fmt::Display for ReplicaRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.store, self.path.join("/"))
    }
}

/// Path segments with empty parts and `.` dropped and `..` applied (never above the root).
fn segments(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

/// An endpoint without scheme case, default ports or a trailing slash; empty means the
/// provider's own (AWS, Google, Azure).
fn endpoint(e: Option<&str>) -> String {
    let e = e
        .unwrap_or("")
        .trim()
        .trim_end_matches('/')
        .to_ascii_lowercase();
    e.strip_suffix(":443")
        .filter(|_| e.starts_with("https://"))
        .or_else(|| e.strip_suffix(":80").filter(|_| e.starts_with("http://")))
        .map(str::to_string)
        .unwrap_or(e)
}

impl ReplicaSpec {
    /// The normalised root, or `None` unless exactly one backend is set.
    pub fn root(&self) -> Option<ReplicaRoot> {
        if self.backends().len() != 1 {
            return None;
        }
        let (store, path) = if let Some(s) = &self.s3 {
            (
                format!(
                    "s3://{}/{}",
                    endpoint(s.endpoint.as_deref()),
                    s.bucket.to_ascii_lowercase()
                ),
                &s.path,
            )
        } else if let Some(g) = &self.gcs {
            (
                format!(
                    "gs://{}/{}",
                    endpoint(g.endpoint.as_deref()),
                    g.bucket.to_ascii_lowercase()
                ),
                &g.path,
            )
        } else if let Some(a) = &self.azure {
            (
                format!(
                    "abs://{}/{}/{}",
                    endpoint(a.endpoint.as_deref()),
                    a.account_name.to_ascii_lowercase(),
                    a.container.to_ascii_lowercase()
                ),
                &a.path,
            )
        } else {
            let f = self.file.as_ref()?;
            ("file://".to_string(), &f.path)
        };
        Some(ReplicaRoot {
            store,
            path: segments(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    fn s3(bucket: &str, path: &str, endpoint: Option<&str>) -> ReplicaSpec {
        ReplicaSpec {
            s3: Some(S3Replica {
                bucket: bucket.into(),
                path: path.into(),
                endpoint: endpoint.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn file(path: &str) -> ReplicaSpec {
        ReplicaSpec {
            file: Some(FileReplica { path: path.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn spellings_of_one_root_are_equal() {
        let a = s3("Bkt", "apps//orders/", Some("http://minio:9000/"))
            .root()
            .unwrap();
        let b = s3("bkt", "./apps/x/../orders", Some("HTTP://MINIO:9000"))
            .root()
            .unwrap();
        assert_eq!(a, b);
        assert!(a.overlaps(&b));
        assert_eq!(a.to_string(), "s3://http://minio:9000/bkt/apps/orders");
        assert_eq!(
            s3("b", "p", Some("https://s3.example.com:443")).root(),
            s3("b", "p", Some("https://s3.example.com")).root()
        );
        assert_eq!(file("/data/r/").root(), file("/data//r").root());
    }

    #[test]
    fn nested_roots_overlap_siblings_do_not() {
        let parent = s3("b", "apps", None).root().unwrap();
        let child = s3("b", "apps/orders", None).root().unwrap();
        let sibling = s3("b", "apps-orders", None).root().unwrap();
        assert!(parent.overlaps(&child) && child.overlaps(&parent));
        assert!(
            !parent.overlaps(&sibling),
            "a shared string prefix is not nesting"
        );
        assert!(!child.overlaps(&s3("b", "apps/users", None).root().unwrap()));
        assert!(!child.overlaps(&s3("other", "apps/orders", None).root().unwrap()));
        assert!(!child.overlaps(
            &s3("b", "apps/orders", Some("http://minio:9000"))
                .root()
                .unwrap()
        ));
        assert!(file("/data")
            .root()
            .unwrap()
            .overlaps(&file("/data/r").root().unwrap()));
    }
}

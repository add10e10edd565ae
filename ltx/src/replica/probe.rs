//! Does this store honour create-only writes? Fencing rests on them: a stale writer is
//! stopped because its PUT of a TXID the new writer already claimed is refused. Some
//! S3-compatible stores ignore `If-None-Match: *` and overwrite instead, which would let
//! two writers both "win" the same TXID. A writer proves the store refuses before it
//! accepts writes: it creates a probe object of its own, tries to create it again with
//! other bytes, and checks that the second write was refused and the first bytes survived.
//!
//! Probe objects live under `probes/` (Litestream reads only `ltx/`) and are deleted after.

use bytes::Bytes;

use super::backend::Put;
use super::error::{ReplicaError, Result};
use super::store::Replica;

const DIR: &str = "probes/";

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOnly {
    /// A second create-only write of the same name was refused and the first bytes kept.
    Honoured,
    /// The store accepted the second write: it does not fence. `detail` says what it did.
    Ignored { detail: String },
}

impl Replica {
    /// Writes a probe object named after `who` (unique per writer incarnation) twice,
    /// create-only, and reports whether the store refused the second write. The probe
    /// object is deleted afterwards (a failed delete is only logged).
    pub async fn probe_create_only(&self, who: &str) -> Result<CreateOnly> {
        let path = probe_path(who);
        let first = Bytes::from(format!("create-only probe by {who}: first\n"));
        let second = Bytes::from(format!("create-only probe by {who}: second\n"));
        let outcome = self.probe_at(&path, first, second).await;
        if let Err(e) = self.op.delete(&path).await {
            tracing::warn!(path, error = %e, "could not delete the create-only probe object");
        }
        outcome
    }

    /// Probe objects still in the store (a writer that died mid-probe leaves one behind;
    /// they are small and harmless, and safe to delete).
    pub async fn leftover_probes(&self) -> Result<Vec<String>> {
        match self.op.list(DIR).await {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter(|e| !e.path().ends_with('/'))
                .map(|e| e.path().to_string())
                .collect()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ReplicaError::store(DIR, e)),
        }
    }

    async fn probe_at(&self, path: &str, first: Bytes, second: Bytes) -> Result<CreateOnly> {
        if self
            .backend
            .put(&self.op, path, first.clone(), None, true)
            .await?
            == Put::Taken
        {
            // The name is unique to this writer incarnation; a store that calls it taken
            // on the first write cannot be told apart from one that always refuses.
            return Err(ReplicaError::AlreadyExists {
                path: path.to_string(),
            });
        }
        let refused = self.backend.put(&self.op, path, second, None, true).await? == Put::Taken;
        let kept = self
            .op
            .read(path)
            .await
            .map_err(|e| ReplicaError::store(path, e))?
            .to_bytes();
        Ok(match (refused, kept == first) {
            (true, true) => CreateOnly::Honoured,
            (false, _) => CreateOnly::Ignored {
                detail: "a second create-only write of the same object succeeded".into(),
            },
            (true, false) => CreateOnly::Ignored {
                detail:
                    "the store refused the second create-only write but replaced the object anyway"
                        .into(),
            },
        })
    }
}

/// `probes/<who>-<nanos>`, with `who` reduced to characters every store accepts.
fn probe_path(who: &str) -> String {
    let who: String = who
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{DIR}{who}-{nanos:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_honours_create_only_and_the_probe_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let r = Replica::open(&url).unwrap();
        assert_eq!(
            r.probe_create_only("pod_0123abcd_7").await.unwrap(),
            CreateOnly::Honoured
        );
        let left = r.leftover_probes().await.unwrap();
        assert!(left.is_empty(), "probe objects left behind: {left:?}");
    }

    #[test]
    fn probe_names_are_safe_for_any_holder() {
        let p = probe_path("päd/../x y");
        assert!(p.starts_with("probes/p_d____x_y-"), "{p}");
    }
}

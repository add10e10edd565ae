//! Writer epochs recorded at the store: `writers/<epoch as 16 hex digits>`, one object per
//! lease acquisition, written create-only. Two holders can never record the same epoch,
//! and the record says which TXID the replica was at when that writer took over — the
//! evidence an operator (or a fenced writer's error message) needs. Litestream ignores
//! the directory (it only reads `ltx/`), so replicas stay restorable with it.
//!
//! The record is plain `key=value` lines so it can be read with `cat`.

use bytes::Bytes;

use super::backend::Put;
use super::error::{ReplicaError, Result};
use super::store::Replica;

const DIR: &str = "writers/";

/// One lease acquisition as recorded at the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRecord {
    pub epoch: u64,
    /// Who acquired (the pod name).
    pub holder: String,
    /// The replica's TXID when the holder took over; its first file is `txid + 1`.
    pub txid: u64,
    pub claimed_at: jiff::Timestamp,
}

impl EpochRecord {
    fn path(epoch: u64) -> String {
        format!("{DIR}{epoch:016x}")
    }

    fn encode(&self) -> String {
        format!(
            "epoch={}\nholder={}\ntxid={:016x}\nclaimed_at={}\n",
            self.epoch, self.holder, self.txid, self.claimed_at
        )
    }

    fn decode(s: &str) -> Option<EpochRecord> {
        let get = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
        };
        Some(EpochRecord {
            epoch: get("epoch")?.parse().ok()?,
            holder: get("holder")?.to_string(),
            txid: u64::from_str_radix(get("txid")?, 16).ok()?,
            claimed_at: get("claimed_at")?.parse().ok()?,
        })
    }
}

impl Replica {
    /// Records `rec` create-only. Fails with [`ReplicaError::AlreadyExists`] when that epoch
    /// was already recorded by anyone (including an identical earlier attempt of ours,
    /// which callers can tell apart by reading it back).
    pub async fn claim_epoch(&self, rec: &EpochRecord) -> Result<()> {
        let path = EpochRecord::path(rec.epoch);
        let data = Bytes::from(rec.encode());
        match self.backend.put(&self.op, &path, data, None, true).await? {
            Put::Created => Ok(()),
            Put::Taken => Err(ReplicaError::AlreadyExists { path }),
        }
    }

    /// Every recorded epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        let entries = match self.op.list(DIR).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ReplicaError::store(DIR, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let name = e.name();
            if name.len() != 16 || u64::from_str_radix(name, 16).is_err() {
                continue;
            }
            let path = format!("{DIR}{name}");
            let body = match self.op.read(&path).await {
                Ok(b) => b.to_vec(),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                Err(e) => return Err(ReplicaError::store(&path, e)),
            };
            if let Some(r) = EpochRecord::decode(&String::from_utf8_lossy(&body)) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.epoch);
        Ok(out)
    }

    /// The highest recorded epoch, if any.
    pub async fn latest_epoch(&self) -> Result<Option<EpochRecord>> {
        Ok(self.epochs().await?.pop())
    }

    /// Removes every epoch record (with the database, under `deletionPolicy: Delete`).
    pub(super) async fn delete_epochs(&self) -> Result<()> {
        for r in self.epochs().await? {
            let path = EpochRecord::path(r.epoch);
            match self.op.delete(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                Err(e) => return Err(ReplicaError::store(&path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let r = EpochRecord {
            epoch: 7,
            holder: "app-0".into(),
            txid: 0x42,
            claimed_at: "2026-11-26T03:00:00Z".parse().unwrap(),
        };
        assert_eq!(EpochRecord::decode(&r.encode()), Some(r));
        assert_eq!(EpochRecord::decode("epoch=x"), None);
    }

    #[tokio::test]
    async fn claims_are_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let rep = Replica::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(rep.latest_epoch().await.unwrap(), None);
        let mut r = EpochRecord {
            epoch: 1,
            holder: "a".into(),
            txid: 0,
            claimed_at: jiff::Timestamp::now(),
        };
        rep.claim_epoch(&r).await.unwrap();
        r.holder = "b".into();
        assert!(matches!(
            rep.claim_epoch(&r).await,
            Err(ReplicaError::AlreadyExists { .. })
        ));
        r.epoch = 2;
        rep.claim_epoch(&r).await.unwrap();
        let latest = rep.latest_epoch().await.unwrap().unwrap();
        assert_eq!((latest.epoch, latest.holder.as_str()), (2, "b"));
        rep.delete_epochs().await.unwrap();
        assert!(rep.epochs().await.unwrap().is_empty());
    }
}

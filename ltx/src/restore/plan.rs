//! Which files rebuild the database at a target: the same choice `litestream restore`
//! makes (newest usable snapshot, then the longest contiguous hops through levels 8..0).

use std::time::SystemTime;

use crate::format::Txid;
use crate::replica::key::SNAPSHOT_LEVEL;
use crate::replica::LtxFileInfo;

/// The point a restore rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    /// Everything up to and including this TXID.
    Txid(Txid),
    /// Everything created strictly before this time.
    Time(SystemTime),
}

impl Target {
    fn admits(&self, f: &LtxFileInfo) -> bool {
        match *self {
            Target::Latest => true,
            Target::Txid(t) => f.key.max_txid <= t,
            Target::Time(t) => f.created_at < t,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Latest => f.write_str("latest"),
            Target::Txid(t) => write!(f, "TXID {t} ({t:016x})"),
            Target::Time(t) => match jiff::Timestamp::try_from(*t) {
                Ok(ts) => write!(f, "time {ts}"),
                Err(_) => f.write_str("time (out of range)"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no LTX file in the replica covers {target} (replica holds TXIDs {available})")]
    NoMatchingFiles { target: String, available: String },
    #[error(
        "non-contiguous LTX files: have up to TXID {have} but the next file starts at TXID {next}"
    )]
    NonContiguous { have: Txid, next: Txid },
}

/// Computes the restore plan. `files` are all LTX objects of a replica (any order);
/// the result is in apply order and starts at TXID 1.
pub fn plan(files: &[LtxFileInfo], target: Target) -> Result<Vec<LtxFileInfo>, PlanError> {
    let mut out: Vec<LtxFileInfo> = Vec::new();
    let mut snapshots: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| f.key.level == SNAPSHOT_LEVEL && f.key.min_txid == 1 && target.admits(f))
        .collect();
    snapshots.sort_by_key(|f| (f.key.min_txid, f.key.max_txid));
    let mut cur: Txid = 0;
    if let Some(s) = snapshots.last() {
        cur = s.key.max_txid;
        out.push((*s).clone());
    }
    loop {
        let best = files
            .iter()
            .filter(|f| f.key.level < SNAPSHOT_LEVEL)
            .filter(|f| f.key.extends(cur) && target.admits(f))
            .min_by(|a, b| {
                b.key
                    .max_txid
                    .cmp(&a.key.max_txid)
                    .then(a.key.min_txid.cmp(&b.key.min_txid))
                    .then(b.key.level.cmp(&a.key.level))
                    .then(a.created_at.cmp(&b.created_at))
            });
        match best {
            Some(f) => {
                cur = f.key.max_txid;
                out.push(f.clone());
            }
            None => break,
        }
    }
    if out.is_empty() {
        let available = match (
            files.iter().map(|f| f.key.min_txid).min(),
            files.iter().map(|f| f.key.max_txid).max(),
        ) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "none".into(),
        };
        return Err(PlanError::NoMatchingFiles {
            target: target.to_string(),
            available,
        });
    }
    if target == Target::Latest {
        if let Some(next) = files
            .iter()
            .filter(|f| f.key.min_txid > cur + 1)
            .map(|f| f.key.min_txid)
            .min()
        {
            return Err(PlanError::NonContiguous { have: cur, next });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::LtxKey;
    use std::time::Duration;

    fn f(level: u8, min: Txid, max: Txid) -> LtxFileInfo {
        LtxFileInfo {
            key: LtxKey::new(level, min, max),
            size: 1,
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(max),
        }
    }

    fn keys(p: &[LtxFileInfo]) -> Vec<(u8, Txid, Txid)> {
        p.iter()
            .map(|f| (f.key.level, f.key.min_txid, f.key.max_txid))
            .collect()
    }

    #[test]
    fn snapshot_then_highest_levels_first() {
        let files = [
            f(9, 1, 5),
            f(0, 1, 1),
            f(0, 6, 6),
            f(0, 7, 7),
            f(1, 6, 7),
            f(0, 8, 8),
            f(2, 1, 6),
        ];
        assert_eq!(
            keys(&plan(&files, Target::Latest).unwrap()),
            [(9, 1, 5), (1, 6, 7), (0, 8, 8)]
        );
        assert_eq!(
            keys(&plan(&files, Target::Txid(6)).unwrap()),
            [(9, 1, 5), (2, 1, 6)]
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        assert_eq!(
            keys(&plan(&files, Target::Time(t)).unwrap()),
            [(9, 1, 5), (2, 1, 6)]
        );
    }

    #[test]
    fn gaps_and_empty() {
        let files = [f(9, 1, 5), f(0, 7, 7)];
        assert_eq!(
            plan(&files, Target::Latest),
            Err(PlanError::NonContiguous { have: 5, next: 7 })
        );
        assert!(matches!(
            plan(&[f(0, 2, 2)], Target::Txid(2)),
            Err(PlanError::NoMatchingFiles { .. })
        ));
        assert!(matches!(
            plan(&[], Target::Latest),
            Err(PlanError::NoMatchingFiles { .. })
        ));
    }
}

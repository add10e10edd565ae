//! The replica's current state as a page map: for every page, the newest LTX file (and
//! frame) holding it, built from the restore plan's page indexes.

use std::collections::HashMap;

use ltx::format::{Header, PageIndexEntry, Txid};
use ltx::replica::{LtxFileInfo, LtxKey, Replica, ReplicaError};
use ltx::restore::{plan, PlanError, Target};

#[derive(Debug, Clone, Copy)]
pub struct PageLoc {
    pub key: LtxKey,
    pub entry: PageIndexEntry,
}

#[derive(Debug, Default)]
pub struct RemoteView {
    pub pages: HashMap<u32, PageLoc>,
    pub page_size: u32,
    pub commit: u32,
    pub txid: Txid,
    /// Header of the newest file (who wrote it, and its buffer sequence marker).
    pub last_header: Option<Header>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("replica files disagree on page size ({0} vs {1})")]
    PageSize(u32, u32),
}

impl RemoteView {
    /// Loads the latest state: the restore plan's files, indexes fetched in parallel.
    pub async fn load(replica: &Replica) -> Result<RemoteView, RemoteError> {
        Self::load_at(replica, Target::Latest).await
    }

    /// Loads the state at `target` (for `Target::Txid(t)`, the view's `txid` is below `t`
    /// when the files that led to `t` are gone).
    pub async fn load_at(replica: &Replica, target: Target) -> Result<RemoteView, RemoteError> {
        let files = replica.list_all().await?;
        if files.is_empty() {
            return Ok(RemoteView::default());
        }
        let chosen = plan(&files, target)?;
        let mut view = RemoteView::default();
        let idx = futures_join(replica, &chosen).await?;
        for (info, fi) in chosen.iter().zip(idx) {
            view.apply(info.key, &fi.header, &fi.pages)?;
        }
        Ok(view)
    }

    /// Layers one file over the view (newer files win; a shrink drops pages).
    pub fn apply(
        &mut self,
        key: LtxKey,
        h: &Header,
        entries: &[PageIndexEntry],
    ) -> Result<Vec<u32>, RemoteError> {
        if self.page_size != 0 && self.page_size != h.page_size {
            return Err(RemoteError::PageSize(self.page_size, h.page_size));
        }
        self.page_size = h.page_size;
        let mut changed = Vec::with_capacity(entries.len());
        for e in entries {
            self.pages.insert(e.pgno, PageLoc { key, entry: *e });
            changed.push(e.pgno);
        }
        if h.commit < self.commit {
            self.pages.retain(|&p, _| p <= h.commit);
        }
        self.commit = h.commit;
        self.txid = h.max_txid;
        self.last_header = Some(*h);
        Ok(changed)
    }
}

async fn futures_join(
    replica: &Replica,
    files: &[LtxFileInfo],
) -> Result<Vec<ltx::replica::FileIndex>, RemoteError> {
    let reads = files.iter().map(|f| replica.read_file_index(f));
    Ok(futures::future::try_join_all(reads).await?)
}

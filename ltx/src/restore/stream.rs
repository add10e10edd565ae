//! Applying a file while it downloads: its ranges arrive in order from the store and go,
//! through a bounded channel, to the decoder on a blocking thread. A restore of one big
//! snapshot then overlaps its download and its decode, and needs no disk beside the
//! database for it (the staging directory holds only the smaller files). The price: an
//! interrupted restore fetches a streamed file again.

use std::io::Read;

use bytes::Bytes;
use futures::TryStreamExt;

use super::apply::DbWriter;
use super::engine::RestoreError;
use crate::replica::{LtxFileInfo, Replica};

/// Ranges in flight between the download and the decoder (8 MiB each).
const QUEUE: usize = 8;

/// `Read` over the chunks a download sends; an error chunk ends the stream with it.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
    /// Bytes of `cur` already read (a position, not `Bytes::slice`: the decoder makes three
    /// small reads per page, and a slice costs two atomic reference-count updates).
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => (self.cur, self.pos) = (b, 0),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Downloads `f` while `writer` applies it. Returns the writer (for the next file) and
/// the bytes downloaded, or the first error: a download error wins over the decoder's
/// complaint about the stream it cut short.
pub(super) async fn download_and_apply(
    replica: &Replica,
    f: &LtxFileInfo,
    concurrency: usize,
    writer: DbWriter,
) -> (DbWriter, Result<u64, RestoreError>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
    let name = replica.path_of(&f.key);
    let apply = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let reader = ChannelReader {
            rx,
            cur: Bytes::new(),
            pos: 0,
        };
        // No `BufReader`: the decoder's reads copy straight out of the downloaded chunks.
        let res = writer.apply(&name, reader);
        (writer, res)
    });
    let fetched = fetch(replica, f, concurrency, &tx).await;
    if let Err(e) = &fetched {
        let _ = tx
            .send(Err(std::io::Error::other(format!("download failed: {e}"))))
            .await;
    }
    drop(tx);
    let (writer, applied) = match apply.await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let result = match (fetched, applied) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(n), Ok(_)) => Ok(n),
    };
    (writer, result)
}

/// The download side: every range to the decoder. A decoder that stopped reading (it
/// found the file corrupt) stops the download.
async fn fetch(
    replica: &Replica,
    f: &LtxFileInfo,
    concurrency: usize,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<u64, RestoreError> {
    let mut stream = Box::pin(replica.download_stream(&f.key, concurrency).await?);
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        n += chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            // The decoder gave up; its error is the one to report.
            break;
        }
    }
    if n != f.size && !tx.is_closed() {
        return Err(RestoreError::SizeMismatch {
            path: replica.path_of(&f.key),
            expected: f.size,
            got: n,
        });
    }
    Ok(n)
}

//! `hydrator ls`: what a replica holds.

use anyhow::Result;
use clap::Args;
use ltx::replica::Replica;

use crate::cli::ReplicaArgs;

#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub replica: ReplicaArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: LsArgs) -> Result<()> {
    let url = a.replica.resolve()?;
    let replica = Replica::open(&url)?;
    let files = replica.list_all().await?;
    let min = files.iter().map(|f| f.key.min_txid).min();
    let max = files.iter().map(|f| f.key.max_txid).max();
    let fmt_time = |t: std::time::SystemTime| {
        jiff::Timestamp::try_from(t)
            .map(|t| format!("{t:.0}"))
            .unwrap_or_default()
    };
    if a.json {
        let levels: Vec<_> = (0..=9u8)
            .filter_map(|l| {
                let fs: Vec<_> = files.iter().filter(|f| f.key.level == l).collect();
                (!fs.is_empty()).then(|| {
                    serde_json::json!({"level": l, "files": fs.len(), "bytes": fs.iter().map(|f| f.size).sum::<u64>()})
                })
            })
            .collect();
        let list: Vec<_> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "level": f.key.level, "min_txid": format!("{:016x}", f.key.min_txid),
                    "max_txid": format!("{:016x}", f.key.max_txid), "size": f.size, "created": fmt_time(f.created_at),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "replica": url,
                "min_txid": min.map(|t| format!("{t:016x}")),
                "max_txid": max.map(|t| format!("{t:016x}")),
                "total_bytes": files.iter().map(|f| f.size).sum::<u64>(),
                "levels": levels,
                "files": list,
            }))?
        );
        return Ok(());
    }
    match (min, max) {
        (Some(a), Some(b)) => println!(
            "replica {url}\nTXIDs {a:016x}..{b:016x}, {} files",
            files.len()
        ),
        _ => {
            println!("replica {url} is empty");
            return Ok(());
        }
    }
    println!(
        "{:<6} {:<17} {:<17} {:>12} created",
        "level", "min_txid", "max_txid", "size"
    );
    for f in &files {
        println!(
            "{:<6} {:016x}  {:016x}  {:>12} {}",
            f.key.level,
            f.key.min_txid,
            f.key.max_txid,
            f.size,
            fmt_time(f.created_at)
        );
    }
    for l in 0..=9u8 {
        let n: Vec<_> = files.iter().filter(|f| f.key.level == l).collect();
        if !n.is_empty() {
            println!(
                "level {l}: {} files, {} bytes",
                n.len(),
                n.iter().map(|f| f.size).sum::<u64>()
            );
        }
    }
    Ok(())
}

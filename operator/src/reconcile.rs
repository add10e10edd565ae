//! One reconcile of a `SqliteDatabase`: validate the spec, make sure the writer Lease exists,
//! check the replica with the referenced credentials, and write what was found to status.
//! Deletion goes through the finalizer and honours `deletionPolicy`.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crds::condition::{
    BOOTSTRAPPED, READY, REPLICA_EXCLUSIVE, REPLICA_REACHABLE, SPEC_VALID, WRITER_HELD,
};
use crds::{
    parse_duration, DeletionPolicy, HandoffStatus, Phase, SqliteDatabase, SqliteDatabaseStatus,
    WriterStatus, FINALIZER,
};

use crate::conditions;
use crate::observe::{self, Observation};
use crate::{credentials, writer_lease, Context, Error, Result};

pub async fn reconcile(db: Arc<SqliteDatabase>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let ns = db
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let key = format!("{ns}/{}", db.name_any());
    let api: Api<SqliteDatabase> = Api::namespaced(ctx.client.clone(), &ns);
    let res = finalizer(&api, FINALIZER, db, |event| async {
        match event {
            Finalizer::Apply(db) => apply(&db, &ctx, &api, &ns).await,
            Finalizer::Cleanup(db) => {
                let done = cleanup(&db, &ctx, &api, &ns).await;
                if done.is_ok() {
                    ctx.metrics.databases.forget(&db);
                }
                done
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if res.is_ok() {
        ctx.reset_backoff(&key);
    }
    res
}

/// Requeue after an error with per-object exponential backoff.
pub fn error_policy(db: Arc<SqliteDatabase>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", db.namespace().unwrap_or_default(), db.name_any());
    let reason = root_reason(err);
    ctx.metrics.error(reason);
    let delay = ctx.next_backoff(&key);
    warn!(database = %key, reason, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn root_reason(err: &Error) -> &'static str {
    use kube::runtime::finalizer::Error as F;
    match err {
        Error::Finalizer(f) => match f.as_ref() {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e.reason(),
            _ => "Finalizer",
        },
        e => e.reason(),
    }
}

async fn apply(
    db: &SqliteDatabase,
    ctx: &Context,
    api: &Api<SqliteDatabase>,
    ns: &str,
) -> Result<Action> {
    let generation = db.metadata.generation;
    let old = db.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    let conds = &mut st.conditions;

    if let Some(msg) = crds::validation_message(&db.spec) {
        let changed = conditions::get(&old.conditions, SPEC_VALID)
            .is_none_or(|c| c.status != "False" || c.message != msg);
        conditions::set(conds, SPEC_VALID, false, "InvalidSpec", &msg, generation);
        conditions::set(
            conds,
            READY,
            false,
            "InvalidSpec",
            format!("invalid spec: {msg}"),
            generation,
        );
        st.phase = Some(Phase::Failed);
        if changed {
            publish(ctx, db, EventType::Warning, "InvalidSpec", &msg).await;
        }
        write_status(ctx, api, db, &old, &st).await?;
        // Nothing to retry until the spec changes.
        return Ok(Action::await_change());
    }
    conditions::set(
        conds,
        SPEC_VALID,
        true,
        "Valid",
        "spec is valid",
        generation,
    );
    let url = db
        .spec
        .replica
        .url()
        .ok_or(Error::MissingField("spec.replica"))?;
    st.replica_url = Some(url.clone());

    // One root, one database: a later database on an equal or nested root is refused
    // (no Lease, and the webhook denies its pods) until the root is free.
    if let Some(all) = ctx.cached_databases().await {
        let mine = db
            .spec
            .replica
            .root()
            .map(|r| r.to_string())
            .unwrap_or_default();
        match crate::conflict::refusal(db, all.iter().map(|d| d.as_ref()), ns) {
            Some(msg) => {
                let changed = conditions::get(&old.conditions, REPLICA_EXCLUSIVE)
                    .is_none_or(|c| c.status != "False" || c.message != msg);
                let conds = &mut st.conditions;
                conditions::set(
                    conds,
                    REPLICA_EXCLUSIVE,
                    false,
                    "ReplicaInUse",
                    &msg,
                    generation,
                );
                conditions::set(conds, READY, false, "ReplicaInUse", &msg, generation);
                st.phase = Some(Phase::Failed);
                if changed {
                    publish(ctx, db, EventType::Warning, "ReplicaInUse", &msg).await;
                }
                write_status(ctx, api, db, &old, &st).await?;
                return Ok(Action::requeue(ctx.settings.resync));
            }
            None => conditions::set(
                &mut st.conditions,
                REPLICA_EXCLUSIVE,
                true,
                "Exclusive",
                format!("no other database uses replica root {mine}"),
                generation,
            ),
        }
    }

    // spec.bootstrap: the source's state becomes TXID 1 before pods may use the database.
    if let Some(b) = &db.spec.bootstrap {
        if !conditions::is_true(&old.conditions, BOOTSTRAPPED) {
            if let Some(action) = bootstrap(ctx, db, api, ns, b, &old, &mut st).await? {
                return Ok(action);
            }
        }
    }

    // The writer Lease: created here, held by writer pods.
    let lease_secs = parse_duration(&db.spec.writer.lease_duration)
        .map(|d| d.as_secs().clamp(1, i32::MAX as u64) as i32)
        .unwrap_or(15);
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    let view = writer_lease::ensure(&leases, db, lease_secs).await?;
    if let Some(h) = &view.handoff {
        record_handoff(ctx, db, &old, &mut st, h).await;
    }
    match view.holder.filter(|h| !h.expired(jiff::Timestamp::now())) {
        Some(_) if view.fenced.is_some() => {
            let reason = view.fenced.clone().unwrap_or_default();
            conditions::set(
                &mut st.conditions,
                WRITER_HELD,
                false,
                "Fenced",
                format!(
                    "writes are fenced for maintenance ({}); `kubectl sqlite unfence {}` lets a writer take over",
                    if reason.is_empty() { "no reason given" } else { &reason },
                    db.name_any()
                ),
                generation,
            );
            st.writer = None;
        }
        Some(h) => {
            conditions::set(
                &mut st.conditions,
                WRITER_HELD,
                true,
                "Held",
                format!(
                    "pod {} holds the writer lease (epoch {})",
                    h.identity, h.epoch
                ),
                generation,
            );
            st.writer = Some(WriterStatus {
                // Pod names have no `_`; the holder identity adds `_<uid>_<pid>`.
                pod: h.identity.split('_').next().unwrap_or_default().to_string(),
                holder: Some(h.identity.clone()),
                epoch: Some(h.epoch),
                since: h.acquired.map(Time),
                unpublished_since: view.unpublished_since.map(Time),
            });
        }
        None => {
            conditions::set(
                &mut st.conditions,
                WRITER_HELD,
                false,
                "NoWriter",
                "no pod holds the writer lease",
                generation,
            );
            st.writer = None;
        }
    }

    match check_replica(db, ctx, ns, &url).await {
        Ok(Err(why)) => {
            let changed = conditions::get(&old.conditions, REPLICA_REACHABLE)
                .is_none_or(|c| c.status != "Unknown" || c.message != why);
            conditions::set_status(
                &mut st.conditions,
                REPLICA_REACHABLE,
                "Unknown",
                "NotObserved",
                &why,
                generation,
            );
            conditions::set(
                &mut st.conditions,
                READY,
                true,
                "Ready",
                format!("ready; the operator does not observe the replica: {why}"),
                generation,
            );
            st.phase = Some(Phase::Ready);
            st.last_synced_txid = None;
            st.last_synced_time = None;
            st.replica_size_bytes = None;
            st.replica_files = None;
            if changed {
                publish(ctx, db, EventType::Normal, "ReplicaNotObserved", &why).await;
            }
            write_status(ctx, api, db, &old, &st).await?;
            Ok(Action::requeue(ctx.settings.resync))
        }
        Ok(Ok(o)) => {
            let was_ok = conditions::is_true(&old.conditions, REPLICA_REACHABLE);
            conditions::set(
                &mut st.conditions,
                REPLICA_REACHABLE,
                true,
                "Reachable",
                format!("{} LTX files, {} bytes", o.files, o.size_bytes),
                generation,
            );
            conditions::set(
                &mut st.conditions,
                READY,
                true,
                "Ready",
                "replica reachable",
                generation,
            );
            st.phase = Some(Phase::Ready);
            st.last_synced_txid = o.latest_txid.map(ltx::replica::format_txid);
            st.last_synced_time = o.latest_time.map(Time);
            st.replica_size_bytes = Some(o.size_bytes.min(i64::MAX as u64) as i64);
            st.replica_files = Some(o.files as i64);
            if !was_ok {
                publish(
                    ctx,
                    db,
                    EventType::Normal,
                    "ReplicaReachable",
                    &format!("replica {url} is reachable"),
                )
                .await;
            }
            write_status(ctx, api, db, &old, &st).await?;
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(e) => {
            let msg = e.to_string();
            let changed = conditions::get(&old.conditions, REPLICA_REACHABLE)
                .is_none_or(|c| c.status != "False" || c.message != msg);
            conditions::set(
                &mut st.conditions,
                REPLICA_REACHABLE,
                false,
                e.reason(),
                &msg,
                generation,
            );
            conditions::set(
                &mut st.conditions,
                READY,
                false,
                e.reason(),
                &msg,
                generation,
            );
            st.phase = Some(Phase::Degraded);
            if changed {
                publish(ctx, db, EventType::Warning, e.reason(), &msg).await;
            }
            write_status(ctx, api, db, &old, &st).await?;
            Err(e)
        }
    }
}

/// Runs a bootstrap step: `None` once the database holds the source's state (reconcile
/// goes on), or the action to retry with while it cannot.
async fn bootstrap(
    ctx: &Context,
    db: &SqliteDatabase,
    api: &Api<SqliteDatabase>,
    ns: &str,
    b: &crds::BootstrapSpec,
    old: &SqliteDatabaseStatus,
    st: &mut SqliteDatabaseStatus,
) -> Result<Option<Action>> {
    let generation = db.metadata.generation;
    if st.bootstrap.is_none() {
        publish(
            ctx,
            db,
            EventType::Normal,
            "BootstrapStarted",
            &format!(
                "copying {} ({}) into this database's replica",
                b.from.replica.url().unwrap_or_default(),
                b.from
                    .point()
                    .map(|p| crate::bootstrap::target(p).to_string())
                    .unwrap_or_default()
            ),
        )
        .await;
    }
    let step = crate::bootstrap::step(ctx, db, ns, b, old, st)
        .await
        .unwrap_or_else(|e| crate::bootstrap::Step::Blocked {
            reason: e.reason(),
            message: e.to_string(),
        });
    match step {
        crate::bootstrap::Step::Done { source_txid } => {
            let bs = st.bootstrap.get_or_insert_with(Default::default);
            bs.phase = crate::bootstrap::COMPLETE.into();
            bs.source_txid = Some(source_txid.clone());
            bs.completed = Some(jiff::Timestamp::now().to_string());
            let msg = format!(
                "copied {} at {}: its TXID {source_txid} is TXID 1 of this database",
                bs.source, bs.target
            );
            conditions::set(
                &mut st.conditions,
                BOOTSTRAPPED,
                true,
                "Copied",
                &msg,
                generation,
            );
            publish(ctx, db, EventType::Normal, "Bootstrapped", &msg).await;
            Ok(None)
        }
        crate::bootstrap::Step::Blocked { reason, message } => {
            let changed = conditions::get(&old.conditions, BOOTSTRAPPED)
                .is_none_or(|c| c.status != "False" || c.message != message);
            conditions::set(
                &mut st.conditions,
                BOOTSTRAPPED,
                false,
                reason,
                &message,
                generation,
            );
            conditions::set(
                &mut st.conditions,
                READY,
                false,
                reason,
                format!("bootstrap: {message}"),
                generation,
            );
            st.phase = Some(if reason == "ReplicaNotEmpty" {
                Phase::Failed
            } else {
                Phase::Pending
            });
            if changed {
                publish(ctx, db, EventType::Warning, reason, &message).await;
            }
            write_status(ctx, api, db, old, st).await?;
            Ok(Some(Action::requeue(
                ctx.settings.resync.min(std::time::Duration::from_secs(15)),
            )))
        }
    }
}

/// Copies a writer's hand-over note to status; an Event the first time it is seen.
async fn record_handoff(
    ctx: &Context,
    db: &SqliteDatabase,
    old: &SqliteDatabaseStatus,
    st: &mut SqliteDatabaseStatus,
    h: &lease::handoff::Handoff,
) {
    let now = HandoffStatus {
        from: h.by.clone(),
        txid: h.txid.clone(),
        time: h.at.clone(),
        complete: h.unsynced.is_none(),
    };
    st.unsynced = h.unsynced.clone();
    if old.last_handoff.as_ref() != Some(&now) {
        let fenced = h.unsynced.as_deref().is_some_and(|u| u.contains("fenced"));
        ctx.metrics
            .databases
            .handoff(db, h.unsynced.is_none(), fenced);
        match &h.unsynced {
            None => {
                let msg = format!(
                    "pod {} published through TXID {} and released the writer lease",
                    h.by, h.txid
                );
                publish(ctx, db, EventType::Normal, "WriterDrained", &msg).await;
            }
            Some(u) => {
                let msg = format!("pod {} stopped with work unsynced: {u}", h.by);
                publish(ctx, db, EventType::Warning, "DrainIncomplete", &msg).await;
            }
        }
    }
    st.last_handoff = Some(now);
}

/// The replica as the operator may reach it, or `Err(why)` inside `Ok` when it may not.
async fn open_replica(
    db: &SqliteDatabase,
    ctx: &Context,
    ns: &str,
    url: &str,
) -> Result<std::result::Result<ltx::replica::Replica, String>> {
    credentials::open_replica(ctx, ns, &db.spec.replica, url).await
}

async fn check_replica(
    db: &SqliteDatabase,
    ctx: &Context,
    ns: &str,
    url: &str,
) -> Result<std::result::Result<Observation, String>> {
    match open_replica(db, ctx, ns, url).await? {
        Ok(r) => Ok(Ok(observe::observe(&r, ctx.settings.replica_timeout).await?)),
        Err(why) => Ok(Err(why)),
    }
}

async fn cleanup(
    db: &SqliteDatabase,
    ctx: &Context,
    api: &Api<SqliteDatabase>,
    ns: &str,
) -> Result<Action> {
    let name = db.name_any();
    let old = db.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.phase = Some(Phase::Deleting);
    write_status(ctx, api, db, &old, &st).await?;

    let valid = crds::validate(&db.spec).is_empty();
    match (db.spec.deletion_policy, valid, db.spec.replica.url()) {
        (DeletionPolicy::Delete, true, Some(url)) => {
            // Never delete objects another database may own: any overlap, earlier or later.
            let all = ctx.all_databases().await?;
            let others = crate::conflict::overlaps(db, all.iter().map(|d| d.as_ref()));
            if !others.is_empty() {
                let names: Vec<_> = others.iter().map(|o| o.describe(ns)).collect();
                let msg = format!(
                    "deletionPolicy is Delete, but the replica root is the same as or nested with that of {}; nothing was deleted from {url}",
                    names.join(", ")
                );
                warn!(database = %name, %msg);
                publish(ctx, db, EventType::Warning, "ReplicaRetained", &msg).await;
                return remove_lease(ctx, ns, &name).await;
            }
            let res = async {
                match open_replica(db, ctx, ns, &url).await? {
                    Ok(replica) => replica
                        .delete_all()
                        .await
                        .map(Ok)
                        .map_err(|e| Error::Replica {
                            url: url.clone(),
                            source: Box::new(e),
                        }),
                    Err(why) => Ok(Err(why)),
                }
            }
            .await;
            match res {
                Ok(Err(why)) => {
                    let msg = format!(
                        "deletionPolicy is Delete, but the operator may not reach the replica: {why}; nothing was deleted from {url}"
                    );
                    warn!(database = %name, %msg);
                    publish(ctx, db, EventType::Warning, "ReplicaRetained", &msg).await;
                }
                Ok(Ok(n)) => {
                    info!(database = %name, files = n, %url, "replica deleted");
                    publish(
                        ctx,
                        db,
                        EventType::Normal,
                        "ReplicaDeleted",
                        &format!("deleted {n} LTX files from {url}"),
                    )
                    .await;
                }
                Err(e) => {
                    let msg = format!(
                        "could not delete the replica: {e}. Fix the problem, or remove the finalizer \
                         {FINALIZER} to delete this resource and keep the replica"
                    );
                    publish(ctx, db, EventType::Warning, "ReplicaDeleteFailed", &msg).await;
                    return Err(e);
                }
            }
        }
        (DeletionPolicy::Delete, _, _) => {
            publish(
                ctx,
                db,
                EventType::Warning,
                "ReplicaRetained",
                "deletionPolicy is Delete but the spec is invalid; nothing was deleted",
            )
            .await;
        }
        (DeletionPolicy::Retain, _, url) => {
            let at = url.unwrap_or_else(|| "the replica".into());
            publish(
                ctx,
                db,
                EventType::Normal,
                "ReplicaRetained",
                &format!("deletionPolicy Retain: {at} was kept"),
            )
            .await;
        }
    }
    remove_lease(ctx, ns, &name).await
}

/// Owned Leases are garbage-collected by the cluster; deleting it here as well makes the
/// hand-off state go away at once and works where no garbage collector runs.
async fn remove_lease(ctx: &Context, ns: &str, name: &str) -> Result<Action> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    match leases
        .delete(&writer_lease::lease_name(name), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Writes status with server-side apply, only when it changed.
pub(crate) async fn write_status(
    ctx: &Context,
    api: &Api<SqliteDatabase>,
    db: &SqliteDatabase,
    old: &SqliteDatabaseStatus,
    new: &SqliteDatabaseStatus,
) -> Result<()> {
    // The per-database metrics follow what status says, written or not.
    ctx.metrics.database(db, new);
    if old == new {
        return Ok(());
    }
    let name = db.name_any();
    let name = name.as_str();
    let patch = serde_json::json!({
        "apiVersion": "sqlitekube.dev/v1alpha1",
        "kind": "SqliteDatabase",
        "status": new,
    });
    api.patch_status(
        name,
        &PatchParams::apply(crate::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.status_updates.inc();
    Ok(())
}

async fn publish(ctx: &Context, db: &SqliteDatabase, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &db.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

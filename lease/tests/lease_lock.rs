//! `LeaseLock` against an in-memory Lease API that behaves like the API server where it
//! matters: `resourceVersion` preconditions (a stale write gets 409 Conflict), 404 for a
//! missing Lease, 409 for a create that lost the race.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::client::Body;
use kube::Client;
use lease::{holder_of, Attempt, LeaseLock};
use serde_json::json;

/// Another contender's edit, applied to the stored Lease.
type Edit = Box<dyn FnOnce(&mut Lease) + Send>;

/// The stored Lease, and a hook run between a client's GET and its PUT (another
/// contender's write landing in between).
#[derive(Default)]
struct Server {
    lease: Option<Lease>,
    version: u64,
    before_next_write: Option<Edit>,
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": reason, "code": code, "message": reason});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(l: &Lease) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(l).unwrap()))
        .unwrap()
}

impl Server {
    fn bump(&mut self, l: &mut Lease) {
        self.version += 1;
        l.metadata.resource_version = Some(self.version.to_string());
    }

    fn handle(&mut self, method: &Method, body: &[u8]) -> Response<Body> {
        match *method {
            Method::GET => match &self.lease {
                Some(l) => ok(l),
                None => status(404, "NotFound"),
            },
            Method::POST => {
                if self.lease.is_some() {
                    return status(409, "AlreadyExists");
                }
                let mut l: Lease = serde_json::from_slice(body).unwrap();
                self.bump(&mut l);
                self.lease = Some(l.clone());
                ok(&l)
            }
            Method::PUT => {
                if let Some(hook) = self.before_next_write.take() {
                    let mut cur = self.lease.clone().unwrap();
                    hook(&mut cur);
                    self.bump(&mut cur);
                    self.lease = Some(cur);
                }
                let mut l: Lease = serde_json::from_slice(body).unwrap();
                let stored = self
                    .lease
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone());
                if l.metadata.resource_version != stored {
                    return status(409, "Conflict");
                }
                self.bump(&mut l);
                self.lease = Some(l.clone());
                ok(&l)
            }
            _ => status(405, "MethodNotAllowed"),
        }
    }
}

fn server() -> (Arc<Mutex<Server>>, Client) {
    let state = Arc::new(Mutex::new(Server::default()));
    let s = state.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let s = s.clone();
        async move {
            let method = req.method().clone();
            let body = req.into_body().collect_bytes().await.unwrap();
            let resp = s.lock().unwrap().handle(&method, &body);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (state, Client::new(svc, "db"))
}

fn lock(client: &Client, who: &str, secs: u64) -> LeaseLock {
    let api: Api<Lease> = Api::namespaced(client.clone(), "db");
    LeaseLock::new(api, "db", "orders-writer", who, Duration::from_secs(secs))
}

/// Sets the stored lease's renewTime to `offset` from now, as a holder whose clock is
/// that far off would write it.
fn skew(state: &Arc<Mutex<Server>>, offset: jiff::SignedDuration) {
    let mut s = state.lock().unwrap();
    let spec = s.lease.as_mut().unwrap().spec.as_mut().unwrap();
    let t = jiff::Timestamp::now() + offset;
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(t));
}

const SHORT: u64 = 1;

#[tokio::test]
async fn take_over_raises_the_epoch_and_the_old_holder_learns_it() {
    let (_state, client) = server();
    let (a, b) = (lock(&client, "a", SHORT), lock(&client, "b", SHORT));
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        Attempt::Held {
            epoch: 1,
            acquired: true
        }
    );
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        Attempt::Held {
            epoch: 1,
            acquired: false
        },
        "a renewal keeps the epoch"
    );
    match b.try_acquire_or_renew().await.unwrap() {
        Attempt::HeldBy(h) => assert_eq!((h.identity.as_str(), h.epoch), ("a", 1)),
        other => panic!("b took a live lease: {other:?}"),
    }
    // a goes silent: after a lease duration of no change (on b's clock), b takes over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::Held {
            epoch: 2,
            acquired: true
        },
        "an expired lease is taken over with a higher epoch"
    );
    match a.try_acquire_or_renew().await.unwrap() {
        Attempt::HeldBy(h) => assert_eq!((h.identity.as_str(), h.epoch), ("b", 2)),
        other => panic!("the old holder still thinks it holds the lease: {other:?}"),
    }
}

/// A holder whose clock runs an hour behind writes renewTimes an hour in the past; one whose
/// clock runs ahead writes them in the future. Neither may change who holds the lease: a
/// contender goes by whether the record changes, on its own clock.
#[tokio::test]
async fn expiry_is_judged_on_the_contenders_clock_not_the_holders() {
    let (state, client) = server();
    let (a, b) = (lock(&client, "a", SHORT), lock(&client, "b", SHORT));
    a.try_acquire_or_renew().await.unwrap();
    // a's clock an hour behind, and a keeps renewing: b must never take over.
    for _ in 0..6 {
        a.try_acquire_or_renew().await.unwrap();
        skew(&state, jiff::SignedDuration::from_hours(-1));
        match b.try_acquire_or_renew().await.unwrap() {
            Attempt::HeldBy(h) => assert_eq!(h.identity, "a"),
            other => panic!("b took a lease that is being renewed: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // a's clock an hour ahead, and a stops: b takes over one lease duration later, not in
    // an hour.
    a.try_acquire_or_renew().await.unwrap();
    skew(&state, jiff::SignedDuration::from_hours(1));
    assert!(matches!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::Held { acquired: true, .. }
    ));
}

/// Someone adds a label to the Lease between the holder's read and its renewal: the API
/// server answers 409. The holder re-reads and renews; it has not lost anything.
#[tokio::test]
async fn a_409_from_someone_elses_edit_is_retried_not_lost() {
    let (state, client) = server();
    let a = lock(&client, "a", 10);
    a.try_acquire_or_renew().await.unwrap();
    state.lock().unwrap().before_next_write = Some(Box::new(|l: &mut Lease| {
        l.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("team".into(), "payments".into());
    }));
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        Attempt::Held {
            epoch: 1,
            acquired: false
        },
        "a label edit cost the writer its lease"
    );
    let stored = state.lock().unwrap().lease.clone().unwrap();
    assert_eq!(
        stored.metadata.labels.unwrap()["team"],
        "payments",
        "the edit is kept"
    );
}

#[tokio::test]
async fn a_write_that_loses_the_race_reports_the_winner() {
    let (state, client) = server();
    let (a, b) = (lock(&client, "a", SHORT), lock(&client, "b", SHORT));
    a.try_acquire_or_renew().await.unwrap();
    assert!(matches!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(_)
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Both see an expired lease; c's take-over lands between b's read and b's write.
    state.lock().unwrap().before_next_write = Some(Box::new(|l: &mut Lease| {
        let spec = l.spec.as_mut().unwrap();
        spec.holder_identity = Some("c".into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            jiff::Timestamp::now(),
        ));
        spec.lease_transitions = Some(2);
    }));
    match b.try_acquire_or_renew().await.unwrap() {
        Attempt::HeldBy(h) => assert_eq!((h.identity.as_str(), h.epoch), ("c", 2)),
        other => panic!("b won a race the server refused: {other:?}"),
    }
    let stored = holder_of(state.lock().unwrap().lease.as_ref().unwrap()).unwrap();
    assert_eq!(stored.identity, "c", "the loser's write must not land");
}

#[tokio::test]
async fn release_frees_the_lease_and_keeps_the_epoch() {
    let (state, client) = server();
    let (a, b) = (lock(&client, "a", 10), lock(&client, "b", 10));
    a.try_acquire_or_renew().await.unwrap();
    assert!(a.release().await.unwrap());
    let stored = state.lock().unwrap().lease.clone().unwrap();
    assert!(holder_of(&stored).is_none(), "released: no holder");
    assert_eq!(
        stored.spec.unwrap().lease_transitions,
        Some(1),
        "epoch kept"
    );
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::Held {
            epoch: 2,
            acquired: true
        },
        "the successor takes it at once, with the next epoch"
    );
    assert!(!a.release().await.unwrap(), "a no longer holds it");
    assert_eq!(
        holder_of(state.lock().unwrap().lease.as_ref().unwrap())
            .unwrap()
            .identity,
        "b"
    );
}

#[test]
fn a_holder_acts_only_for_80_percent_of_the_lease() {
    let (_, client) = {
        // Client::new needs a runtime for its service buffer.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        server()
    };
    let l = lock(&client, "a", 10);
    let t = std::time::Instant::now();
    assert_eq!(l.safe_until(t) - t, Duration::from_secs(8));
}

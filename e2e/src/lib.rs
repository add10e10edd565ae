//! End-to-end harness: a real API server (`KUBECONFIG`), SeaweedFS on 127.0.0.1, the
//! operator binary with its webhook called by the API server over TLS, and a kubelet
//! stand-in that runs the stored pods' containers as local processes.

pub mod cluster;
pub mod fixture;
pub mod kubelet;
pub mod proxy;

pub use cluster::*;
pub use fixture::Fixture;
pub use kubelet::{Images, Kubelet, LocalPod, Proc};

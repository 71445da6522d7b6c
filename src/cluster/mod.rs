//! The shared store of a cluster of nodes (SPEC §11): a client of etcd's v3
//! JSON gateway, where a load balancer's keys live under its prefix, and the
//! state a node has read from them. Applying that state is the control
//! plane's (`control::cluster`).

pub mod etcd;
pub mod layout;
pub mod state;

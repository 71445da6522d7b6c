//! Certificates ordered from an ACME server (SPEC §10, RFC 8555) with the
//! `instant-acme` client: the account, one order with its challenges, where
//! results are kept, and when to renew. Running the orders and serving the
//! results is the control plane's (`control::acme`); answering the
//! challenges is the listeners' (an http-01 token is a rule, a tls-alpn-01
//! certificate is `tls::acme`'s).

pub mod account;
pub mod order;
pub mod schedule;
pub mod store;

//! Logging users in at the edge with OpenID Connect (SPEC §9), as ALB's
//! authenticate-oidc action does: the authorization-code flow with PKCE,
//! `state` and `nonce`; ID tokens checked with `jsonwebtoken` against the
//! provider's JWKS; the session sealed in a cookie with the stickiness key
//! set; the user's claims passed on as an ES256 JWT signed by edgelb.

pub mod claims;
pub mod flow;
pub mod gate;
pub mod provider;
pub mod session;

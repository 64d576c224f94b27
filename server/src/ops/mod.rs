//! What operators see: four-letter words, the admin HTTP server, /metrics.
pub mod admin;
pub mod fourlw;

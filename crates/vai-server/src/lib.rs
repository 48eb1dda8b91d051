//! The HTTP face of vai: the Kubernetes REST read API (list, get, watch, discovery, Tables) and
//! the query API, answered from the store, plus the proxy that forwards writes upstream.
//!
//! This crate reads the store and never writes to it; every error it returns to a client is a
//! Kubernetes `Status` object, built in one place.
//! (The handlers arrive with the `vai serve` work; this crate is the place for them.)

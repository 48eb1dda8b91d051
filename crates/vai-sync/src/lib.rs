//! Keeps vai's store in step with an upstream kube-apiserver.
//!
//! Discovery decides which resource types to cache; one list/watch loop per type, written as an
//! explicit state machine, lists (or streams the initial list), watches with bookmarks, resumes
//! from the resource version persisted in the store after a restart, and on `410 Gone` relists
//! and hands the store a replacement set to swap in atomically.
//!
//! This crate talks to upstream and writes to the store; it never serves HTTP.
//! (The loops arrive with the `vai serve` work; this crate is the place for them.)

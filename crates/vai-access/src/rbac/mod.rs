//! The apiserver's RBAC authorizer, evaluated locally.

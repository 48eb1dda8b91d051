//! Decisions remembered ([`Memoized`]): a [`Policy`] with the decisions it made, per user and
//! request. A new policy — any RBAC change — starts with none, so what a decision is
//! remembered by (the policy, the user, the request) changes whenever any of that user's
//! roles or bindings do, and an RBAC change takes effect at once.
//!
//! This module never decides: the policy does; it only remembers, within a bound.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Decision, Policy};
use crate::{Attributes, User};

/// Most decisions remembered; past it the memo starts again (a policy's decisions are all
/// equally cheap to make again).
const MAX_DECISIONS: usize = 50_000;

/// A policy and the decisions it made, remembered per user and request until the policy is
/// replaced (any RBAC change builds a new one, with none).
#[derive(Debug)]
pub struct Memoized {
    policy: Policy,
    decisions: Mutex<HashMap<(User, Attributes), Decision>>,
}

impl Memoized {
    /// `policy`, with no decision made yet.
    pub fn new(policy: Policy) -> Memoized {
        Memoized {
            policy,
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// [`Policy::authorize`], remembered.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Decision {
        let key = (user.clone(), attributes.clone());
        if let Some(decision) = self.decisions.lock().expect("decisions lock").get(&key) {
            return decision.clone();
        }
        let decision = self.policy.authorize(user, attributes);
        let mut decisions = self.decisions.lock().expect("decisions lock");
        if decisions.len() >= MAX_DECISIONS {
            decisions.clear();
        }
        decisions.insert(key, decision.clone());
        decision
    }

    /// How many decisions are remembered.
    pub fn remembered(&self) -> usize {
        self.decisions.lock().expect("decisions lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_decision_is_the_policys_and_is_made_once() {
        let memo = Memoized::new(Policy::new(vec![], vec![], vec![], vec![]));
        let get = Attributes::NonResource {
            verb: "get".into(),
            path: "/version".into(),
        };
        let admin = User {
            name: "root".into(),
            groups: vec![super::super::PRIVILEGED_GROUP.into()],
            ..User::default()
        };
        let nobody = User {
            name: "nobody".into(),
            ..User::default()
        };
        for _ in 0..2 {
            assert_eq!(
                memo.authorize(&admin, &get),
                memo.policy().authorize(&admin, &get)
            );
            assert!(!memo.authorize(&nobody, &get).allowed);
        }
        assert_eq!(memo.remembered(), 2, "one per user and request");
    }
}

//! Lockouts per account name, counted on whatever username the client sent.
//!
//! The table never learns whether an account exists, so an unknown name is counted and
//! locked exactly like a real one and a lockout reveals nothing. Names are kept as a keyed
//! 64-bit hash of their ASCII-lowercased bytes: an entry costs the same whatever the length
//! of the name an attacker sends, and a case variant of a name cannot dodge its lockout.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

#[derive(Debug, Clone, Copy)]
struct AccountState {
    failures: u32,
    window_start_ms: u64,
    locked_until_ms: u64,
    last_seen_ms: u64,
}

/// Settings of the lockout table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockoutPolicy {
    pub(crate) failures_before_lockout: u32,
    pub(crate) window_ms: u64,
    pub(crate) lockout_ms: u64,
    pub(crate) max_accounts: usize,
}

/// Failure counts and lockouts by account name, bounded.
#[derive(Debug)]
pub(crate) struct AccountLockouts {
    names: RandomState,
    accounts: HashMap<u64, AccountState>,
    policy: LockoutPolicy,
}

impl AccountLockouts {
    pub(crate) fn new(policy: LockoutPolicy) -> AccountLockouts {
        AccountLockouts {
            names: RandomState::new(),
            accounts: HashMap::new(),
            policy: LockoutPolicy {
                failures_before_lockout: policy.failures_before_lockout.max(1),
                max_accounts: policy.max_accounts.max(1),
                ..policy
            },
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }

    fn key(&self, username: &str) -> u64 {
        let mut hasher = self.names.build_hasher();
        for byte in username.bytes() {
            hasher.write_u8(byte.to_ascii_lowercase());
        }
        hasher.finish()
    }

    /// Counts a failure; true when it locks the account now. Failures while locked neither
    /// count nor extend the lockout, so the lockout's end stays predictable for the owner.
    pub(crate) fn failed(&mut self, now_ms: u64, username: &str) -> bool {
        let key = self.key(username);
        if !self.accounts.contains_key(&key) && self.accounts.len() >= self.policy.max_accounts {
            self.make_room(now_ms);
        }
        let policy = self.policy;
        let state = self.accounts.entry(key).or_insert(AccountState {
            failures: 0,
            window_start_ms: now_ms,
            locked_until_ms: 0,
            last_seen_ms: now_ms,
        });
        state.last_seen_ms = state.last_seen_ms.max(now_ms);
        if state.locked_until_ms > now_ms {
            return false;
        }
        if now_ms.saturating_sub(state.window_start_ms) >= policy.window_ms {
            state.failures = 0;
            state.window_start_ms = now_ms;
        }
        state.failures += 1;
        if state.failures >= policy.failures_before_lockout {
            state.locked_until_ms = now_ms.saturating_add(policy.lockout_ms);
            state.failures = 0;
            state.window_start_ms = state.locked_until_ms;
            return true;
        }
        false
    }

    pub(crate) fn is_locked(&self, now_ms: u64, username: &str) -> bool {
        self.accounts
            .get(&self.key(username))
            .is_some_and(|state| state.locked_until_ms > now_ms)
    }

    /// Drops entries that no longer affect a decision.
    pub(crate) fn purge(&mut self, now_ms: u64) {
        let window = self.policy.window_ms;
        self.accounts
            .retain(|_, state| !is_forgettable(state, now_ms, window));
    }

    fn make_room(&mut self, now_ms: u64) {
        self.purge(now_ms);
        let max = self.policy.max_accounts;
        if self.accounts.len() < max {
            return;
        }
        // Evict the unlocked first, then the least recently seen: flooding the table with
        // made-up names should not be a way to lift a lockout.
        let keep = max - max / 4;
        let excess = self.accounts.len().saturating_sub(keep).max(1);
        let mut ranked: Vec<(bool, u64, u64)> = self
            .accounts
            .iter()
            .map(|(key, s)| (s.locked_until_ms > now_ms, s.last_seen_ms, *key))
            .collect();
        if excess < ranked.len() {
            ranked.select_nth_unstable(excess);
        }
        for (_, _, key) in ranked.iter().take(excess) {
            self.accounts.remove(key);
        }
    }
}

fn is_forgettable(state: &AccountState, now_ms: u64, window_ms: u64) -> bool {
    state.locked_until_ms <= now_ms
        && (state.failures == 0 || now_ms.saturating_sub(state.window_start_ms) >= window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            failures_before_lockout: 3,
            window_ms: 1_000,
            lockout_ms: 5_000,
            max_accounts: 100,
        }
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut table = AccountLockouts::new(policy());
        for n in 0..10 {
            assert!(!table.failed(n * 600, "alice"));
        }
        assert!(!table.is_locked(6_000, "alice"));
    }

    #[test]
    fn a_lockout_ignores_case_and_ends() {
        let mut table = AccountLockouts::new(policy());
        assert!(!table.failed(0, "alice"));
        assert!(!table.failed(1, "Alice"));
        assert!(table.failed(2, "ALICE"));
        assert!(table.is_locked(3, "alice"));
        assert!(!table.failed(4, "alice"), "a locked account locked again");
        assert!(table.is_locked(5_001, "alice"));
        assert!(!table.is_locked(5_002, "alice"));
        assert!(
            !table.failed(5_002, "alice"),
            "failures from before the lockout still counted"
        );
    }

    #[test]
    fn flooding_with_names_does_not_lift_a_lockout() {
        let mut table = AccountLockouts::new(LockoutPolicy {
            max_accounts: 10,
            ..policy()
        });
        for t in 0..3 {
            table.failed(t, "alice");
        }
        for n in 0..1_000u64 {
            table.failed(10 + n, &format!("guess{n}"));
            assert!(table.len() <= 10);
        }
        assert!(table.is_locked(2_000, "alice"));
    }
}

//! What a measured caller carries from call to call: a seeded pick, and the current token of
//! each session it rotates in turn (`Chain`).

use std::sync::Arc;

use auth_sessions::RefreshToken;

pub(crate) fn pick<T: Copy>(items: &[T], seed: u64) -> T {
    items[(seed % items.len() as u64) as usize]
}

pub(crate) type Shared<T> = Arc<std::sync::Mutex<T>>;

/// A caller's own sessions, rotated in turn: the current token text of each.
pub(crate) struct Chain {
    pub(crate) tokens: Vec<String>,
    pub(crate) next: usize,
}

impl Chain {
    pub(crate) fn shared(tokens: &[RefreshToken]) -> Shared<Chain> {
        Arc::new(std::sync::Mutex::new(Chain {
            tokens: tokens
                .iter()
                .map(|t| t.expose_secret().to_owned())
                .collect(),
            next: 0,
        }))
    }

    /// The next session's index and current token.
    pub(crate) fn take(chain: &Shared<Chain>) -> (usize, String) {
        let mut chain = chain.lock().unwrap();
        let i = chain.next;
        chain.next = (i + 1) % chain.tokens.len();
        (i, chain.tokens[i].clone())
    }

    pub(crate) fn put(chain: &Shared<Chain>, i: usize, token: String) {
        chain.lock().unwrap().tokens[i] = token;
    }
}

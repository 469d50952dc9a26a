//! What a measured caller carries from call to call: a seeded pick of its input, the current
//! token of each session it rotates in turn (`Chain`), and the sessions it revokes, each once
//! (`Revocations`).

use std::sync::Arc;

use auth_sessions::{RefreshToken, SessionKey};

pub(crate) type Shared<T> = Arc<std::sync::Mutex<T>>;

pub(crate) fn pick<T: Copy>(items: &[T], seed: u64) -> T {
    items[(seed % items.len() as u64) as usize]
}

/// A measured operation that calls `call` with its state and an item of `items` picked by the
/// call's seed.
pub(crate) fn picked<S, T, F, Fut>(
    items: &Arc<Vec<T>>,
    call: F,
) -> impl Fn(S, u64) -> Fut + Send + Sync + Clone + 'static
where
    T: Copy + Send + Sync + 'static,
    F: Fn(S, T) -> Fut + Send + Sync + Clone + 'static,
{
    let items = items.clone();
    move |state, seed| call(state, pick(&items, seed))
}

/// The text of a token of `tokens` picked by `seed`, as a device presents it.
pub(crate) fn presented(tokens: &[RefreshToken], seed: u64) -> &str {
    tokens[(seed % tokens.len() as u64) as usize].expose_secret()
}

/// A caller's own sessions, rotated in turn: the current token text of each.
pub(crate) struct Chain {
    tokens: Vec<String>,
    next: usize,
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

/// Live sessions to revoke, each once, shared by the callers of one side.
#[derive(Clone)]
pub(crate) struct Revocations(Shared<Vec<SessionKey>>);

impl Revocations {
    pub(crate) fn new(keys: Vec<SessionKey>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(keys)))
    }

    /// The next session to revoke.
    pub(crate) fn next(&self) -> SessionKey {
        self.0
            .lock()
            .unwrap()
            .pop()
            .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND")
    }
}

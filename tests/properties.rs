//! Property-based tests: token parsing for any text, and every text input of a session (and
//! every presented token) going through a real repository: round-tripped exactly, or refused
//! before anything is written.

mod common;

use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, InputProblem, MAX_DEVICE_INFO_CHARS, MAX_GENERATION, MAX_USER_AGENT_CHARS,
    NewSession, RefreshToken, Rotation, RotationKey, SessionPolicy, SessionRepo, TOKEN_PREFIX,
    Validation,
};
use common::TestDb;
use common::outcomes::all_rows;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::string::string_regex;
use proptest::test_runner::{TestCaseError, TestRunner};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const URL_SAFE_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Characters after the prefix: 90 bytes in unpadded base64.
const BODY_CHARS: usize = 120;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What a well-formed token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    user: Uuid,
    session: Uuid,
    generation: u32,
    key_id: u16,
    chain: [u8; 16],
    tag: [u8; 32],
}

/// The check of a payload: the first 4 bytes of SHA-256 over the prefix and the payload.
fn check_of(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(TOKEN_PREFIX.as_bytes())
        .chain_update(payload)
        .finalize();
    digest[..4].try_into().unwrap()
}

/// An independent oracle, with its own base64url decoder: `asr2_` and 120 characters of the
/// URL-safe alphabet (90 bytes, no padding bits) whose last 4 bytes are the check of the 86
/// before them, with a generation of at most `MAX_GENERATION` and a key id from 1 to 32767.
fn oracle(text: &str) -> Option<Fields> {
    let body = text.strip_prefix("asr2_")?.as_bytes();
    if body.len() != BODY_CHARS {
        return None;
    }
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(90);
    for &c in body {
        let index = URL_SAFE_ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | index;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if bytes.len() != 90 || count != 0 {
        return None;
    }
    if bytes[86..] != check_of(&bytes[..86]) {
        return None;
    }
    let generation = u32::from_be_bytes(bytes[32..36].try_into().unwrap());
    let key_id = u16::from_be_bytes(bytes[36..38].try_into().unwrap());
    (generation <= i32::MAX as u32 && (1..=i16::MAX as u16).contains(&key_id)).then(|| Fields {
        user: Uuid::from_slice(&bytes[..16]).unwrap(),
        session: Uuid::from_slice(&bytes[16..32]).unwrap(),
        generation,
        key_id,
        chain: bytes[38..54].try_into().unwrap(),
        tag: bytes[54..86].try_into().unwrap(),
    })
}

/// Encodes a token's text from its fields (any generation or key id, also out of range), with
/// the base64 crate.
fn encode(fields: &Fields) -> String {
    use base64::Engine as _;
    let mut body = Vec::with_capacity(90);
    body.extend_from_slice(fields.user.as_bytes());
    body.extend_from_slice(fields.session.as_bytes());
    body.extend_from_slice(&fields.generation.to_be_bytes());
    body.extend_from_slice(&fields.key_id.to_be_bytes());
    body.extend_from_slice(&fields.chain);
    body.extend_from_slice(&fields.tag);
    let check = check_of(&body);
    body.extend_from_slice(&check);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&body)
    )
}

fn check_token_parse(input: &str) -> Result<Option<Fields>, TestCaseError> {
    let expected = oracle(input);
    match RefreshToken::parse(input) {
        Ok(token) => {
            let Some(fields) = expected else {
                return Err(TestCaseError::fail(format!("accepted {input:?}")));
            };
            prop_assert_eq!(token.expose_secret(), input);
            prop_assert_eq!(input.len(), TOKEN_PREFIX.len() + BODY_CHARS);
            prop_assert_eq!(token.user_id(), fields.user);
            prop_assert_eq!(token.session_id(), fields.session);
            prop_assert_eq!(
                (token.session_key().user_id, token.session_key().session_id),
                (fields.user, fields.session)
            );
            prop_assert_eq!(token.generation(), fields.generation);
            prop_assert_eq!(token.key_id(), fields.key_id);
            let hash = hex::encode(Sha256::digest(input.as_bytes()));
            let stored = token.hash();
            prop_assert_eq!(stored.as_str(), hash.as_str());
            prop_assert_eq!(input.parse::<RefreshToken>().ok(), Some(token));
        }
        Err(Error::MalformedToken) => {
            prop_assert!(expected.is_none(), "refused a well-formed token {input:?}");
            prop_assert!(input.parse::<RefreshToken>().is_err());
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(expected)
}

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        any::<u128>().prop_map(Uuid::from_u128),
        Just(Uuid::nil()),
        Just(Uuid::max()),
    ]
}

/// Small generations (a real chain), any, and the edges of the allowed range.
fn generation() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0u32..=5,
        2 => any::<u32>(),
        1 => Just(MAX_GENERATION),
        1 => Just(MAX_GENERATION + 1),
        1 => Just(u32::MAX),
    ]
}

/// Key ids: the usual ones, any, and the edges of the allowed range.
fn key_id() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => 1u16..=3,
        2 => any::<u16>(),
        1 => Just(0),
        1 => Just(i16::MAX as u16),
        1 => Just(i16::MAX as u16 + 1),
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        uuid(),
        uuid(),
        generation(),
        key_id(),
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(user, session, generation, key_id, chain, tag)| Fields {
            user,
            session,
            generation,
            key_id,
            chain,
            tag,
        })
}

/// Text that is, or is one edit away from, a well-formed token: a character replaced (by one of
/// the alphabet or not), removed or added, the text cut or extended, the prefix altered.
fn near_token(token: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let other_char = prop_oneof![
        3 => prop::sample::select(URL_SAFE_ALPHABET).prop_map(char::from),
        1 => prop::sample::select(vec!['+', '/', '=', ' ', '\t', '\0', '.', 'é', '😀']),
        1 => any::<char>(),
    ];
    (
        token,
        0..6u8,
        any::<prop::sample::Index>(),
        other_char,
        0usize..8,
    )
        .prop_map(|(text, edit, at, c, n)| {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len());
            match edit {
                0 => chars[i] = c,
                1 => {
                    chars.remove(i);
                }
                2 => chars.insert(i, c),
                3 => chars.truncate(chars.len().saturating_sub(n + 1)),
                4 => chars.extend(std::iter::repeat_n(c, n + 1)),
                _ => chars[at.index(TOKEN_PREFIX.len())] = c,
            }
            String::from_iter(chars)
        })
}

/// Any presented token text: arbitrary, nearly well-formed, or well-formed.
fn presented() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<u8>(), 0..150).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        string_regex("asr2_[A-Za-z0-9_\\-]{118,122}|(asr2_)?[A-Za-z0-9_\\-+/=. \t\0é€😀]{114,134}")
            .unwrap(),
        near_token(fields().prop_map(|f| encode(&f))),
        fields().prop_map(|f| encode(&f)),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn token_parsing_of_lossy_bytes(bytes in prop_oneof![
        vec(any::<u8>(), 0..150),
        vec(prop_oneof![3 => prop::sample::select(URL_SAFE_ALPHABET), 1 => any::<u8>()], 119..131),
    ]) {
        check_token_parse(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn token_parsing_of_any_string(text in any::<String>()) {
        check_token_parse(&text)?;
    }

    #[test]
    fn token_parsing_near_the_format(text in presented()) {
        check_token_parse(&text)?;
    }

    #[test]
    fn one_edit_of_a_real_token_is_refused_or_parsed_exactly(
        text in near_token(uuid().prop_map(|user| {
            RotationKey::from_bytes(&[9; 32]).unwrap().mint(user).unwrap().expose_secret().to_owned()
        }))
    ) {
        check_token_parse(&text)?;
    }

    #[test]
    fn every_payload_encodes_to_a_token_that_parses_back(fields in fields()) {
        let text = encode(&fields);
        let parsed = check_token_parse(&text)?;
        if fields.generation > MAX_GENERATION || !(1..=i16::MAX as u16).contains(&fields.key_id) {
            prop_assert!(parsed.is_none());
            return Ok(());
        }
        prop_assert_eq!(parsed, Some(fields));
        let token = RefreshToken::parse(&text).unwrap();
        // Random tags verify under no key.
        let key = RotationKey::new(fields.key_id, &[9; 32]).unwrap();
        prop_assert!(!key.verifies(&token));
        // Successors are well-formed tokens of the same session and chain, one generation on,
        // signed by the key, never the presented one, and the same every time; the last
        // generation has none.
        let key = RotationKey::from_bytes(&[9; 32]).unwrap();
        match key.successor(&token) {
            Ok(next) => {
                prop_assert!(fields.generation < MAX_GENERATION);
                prop_assert!(key.verifies(&next));
                let next_fields = check_token_parse(next.expose_secret())?;
                prop_assert_eq!(
                    next_fields.map(|f| (f.user, f.session, f.generation, f.key_id, f.chain)),
                    Some((fields.user, fields.session, fields.generation + 1, 1, fields.chain))
                );
                prop_assert_ne!(&next, &token);
                prop_assert_eq!(Some(next), key.successor(&token).ok());
            }
            Err(Error::InvalidInput { field: "generation", .. }) => {
                prop_assert_eq!(fields.generation, MAX_GENERATION);
            }
            Err(other) => prop_assert!(false, "successor: {other:?}"),
        }
    }

    #[test]
    fn minted_tokens_are_well_formed_and_carry_their_user(user in uuid()) {
        let token = RotationKey::from_bytes(&[9; 32]).unwrap().mint(user).unwrap();
        let fields = check_token_parse(token.expose_secret())?;
        prop_assert_eq!(
            fields.map(|f| (f.user, f.session, f.generation)),
            Some((user, token.session_id(), 0))
        );
    }

    #[test]
    fn a_token_with_another_user_id_parses_but_hashes_differently(
        fields in fields(),
        other in uuid(),
    ) {
        prop_assume!(other != fields.user);
        let fields = Fields {
            generation: fields.generation.min(MAX_GENERATION),
            key_id: fields.key_id.clamp(1, i16::MAX as u16),
            ..fields
        };
        let token = RefreshToken::parse(&encode(&fields)).unwrap();
        let altered = RefreshToken::parse(&encode(&Fields { user: other, ..fields })).unwrap();
        prop_assert_eq!(altered.user_id(), other);
        prop_assert_eq!(altered.session_id(), token.session_id());
        prop_assert_ne!(altered.hash(), token.hash());
    }
}

// ---------------------------------------------------------------------------------------------
// Properties against a real repository
// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Any character but NUL (proptest picks NUL for about one character in fifty, which would
/// make nearly every longer string invalid).
fn no_nul_char() -> impl Strategy<Value = char> {
    any::<char>().prop_map(|c| if c == '\0' { '\u{1}' } else { c })
}

/// Optional text for a field limited to `max` characters: short, around the limit (in
/// characters, with multi-byte ones), long (up to ~1500, any character), with NUL bytes, or
/// absent.
fn text(max: usize) -> impl Strategy<Value = Option<String>> {
    let wide = prop_oneof![
        Just('é'),
        Just('€'),
        Just('😀'),
        Just('a'),
        Just('\u{301}'),
        Just('\u{FFFF}'),
        Just('\u{10FFFF}'),
        no_nul_char(),
    ];
    let some = prop_oneof![
        3 => vec(no_nul_char(), 0..40).prop_map(String::from_iter),
        3 => vec(wide, max - 3..=max + 3).prop_map(String::from_iter),
        1 => vec(any::<char>(), 0..1500).prop_map(String::from_iter),
        1 => vec(no_nul_char(), max - 2..=max + 2).prop_map(String::from_iter),
        1 => (vec(any::<char>(), 0..30), any::<prop::sample::Index>()).prop_map(|(chars, at)| {
            let mut chars = chars;
            chars.insert(at.index(chars.len() + 1), '\0');
            String::from_iter(chars)
        }),
        1 => string_regex("[\\x01-\\x1f\\x7f' \"\\\\%_;-]{0,20}").unwrap(),
    ];
    prop_oneof![1 => Just(None), 6 => some.prop_map(Some)]
}

/// The error creating a session with these texts must give, or `None` when it is valid.
fn expected_problem(
    device_info: Option<&str>,
    user_agent: Option<&str>,
) -> Option<(&'static str, InputProblem)> {
    let problem = |text: Option<&str>, max_chars: usize| {
        let text = text?;
        if text.contains('\0') {
            Some(InputProblem::NulByte)
        } else if text.chars().count() > max_chars {
            Some(InputProblem::TooLong { max_chars })
        } else {
            None
        }
    };
    problem(device_info, MAX_DEVICE_INFO_CHARS)
        .map(|p| ("device_info", p))
        .or_else(|| problem(user_agent, MAX_USER_AGENT_CHARS).map(|p| ("user_agent", p)))
}

#[test]
fn every_text_input_is_refused_before_writing_or_read_back_exactly() {
    let rt = runtime();
    let db = rt.block_on(TestDb::new());
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().max_sessions_per_user(None, CapPolicy::Refuse),
    )
    .unwrap();
    let user = rt.block_on(db.user());
    let mut runner = TestRunner::new(config(400));
    let outcomes = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let result = runner.run(
        &(text(MAX_DEVICE_INFO_CHARS), text(MAX_USER_AGENT_CHARS)),
        |(device_info, user_agent)| {
            rt.block_on(async {
                let mut new = NewSession::new(user, DAY);
                new.device_info = device_info.clone();
                new.user_agent = user_agent.clone();
                let expected = expected_problem(device_info.as_deref(), user_agent.as_deref());
                let rows_before = db.session_rows().await;
                let created = repo.create(&new).await;
                let rows_after = db.session_rows().await;
                match (created, expected) {
                    (Err(Error::InvalidInput { field, problem }), Some(expected)) => {
                        prop_assert_eq!((field, problem), expected);
                        prop_assert_eq!(rows_after, rows_before, "a refused create wrote");
                        *outcomes
                            .borrow_mut()
                            .entry(format!("refused {field}: {problem}"))
                            .or_default() += 1;
                    }
                    (Ok((session, token)), None) => {
                        prop_assert_eq!(rows_after, rows_before + 1);
                        prop_assert_eq!(&session.device_info, &device_info);
                        prop_assert_eq!(&session.user_agent, &user_agent);
                        let found = repo.find_by_token(token.expose_secret()).await;
                        let found = found.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                        prop_assert_eq!(found.as_ref(), Some(&session), "read back differs");
                        let valid = repo.validate(token.expose_secret()).await;
                        let valid = valid.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                        prop_assert_eq!(valid, Validation::Valid(session.clone()));
                        let devices = repo.list_devices(user).await;
                        let devices = devices.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                        let device = devices.iter().find(|d| d.id == session.id);
                        prop_assert_eq!(device.map(|d| &d.device_info), Some(&device_info));
                        *outcomes
                            .borrow_mut()
                            .entry("accepted, read back exactly".into())
                            .or_default() += 1;
                    }
                    (created, expected) => prop_assert!(
                        false,
                        "create gave {:?}, expected {:?}; rows {} -> {}",
                        created.map(|(s, _)| s.id),
                        expected,
                        rows_before,
                        rows_after
                    ),
                }
                Ok(())
            })
        },
    );
    let outcomes = outcomes.into_inner();
    println!("outcomes: {outcomes:#?}");
    let accepted = outcomes
        .get("accepted, read back exactly")
        .copied()
        .unwrap_or(0);
    let refused: u32 = outcomes.values().sum::<u32>() - accepted;
    if let Err(err) = result {
        panic!("{err}");
    }
    assert!(accepted > 50 && refused > 50, "both outcomes are exercised");
}

/// Well-formed tokens aimed at real rows: a real session's ids (and chain) with any generation
/// and tag, a real user's id with any session id, and a real token's tag under another user's
/// id. None carries a tag the key gave.
fn aimed_at(session: Fields, other_user: Uuid) -> impl Strategy<Value = String> {
    let tag = any::<[u8; 32]>();
    prop_oneof![
        (generation(), tag).prop_map(move |(generation, tag)| Fields {
            generation,
            tag,
            ..session
        }),
        (uuid(), generation(), tag).prop_map(move |(id, generation, tag)| Fields {
            session: id,
            generation,
            tag,
            ..session
        }),
        prop_oneof![uuid(), Just(other_user)].prop_map(move |user| Fields { user, ..session }),
    ]
    .prop_map(|fields| encode(&fields))
}

#[test]
fn find_validate_and_rotate_of_any_presented_text_are_typed_and_change_nothing() {
    let rt = runtime();
    let db = rt.block_on(TestDb::new());
    let key = RotationKey::from_bytes(&[3; 32]).unwrap();
    let repo =
        SessionRepo::with_policy(db.pool.clone(), SessionPolicy::default().rotation_key(key))
            .unwrap();
    // Real sessions of two users, one rotated three times, so that forged tokens claim every
    // generation: the current one, its parent, older ones and later ones.
    let user = rt.block_on(db.user());
    let other_user = rt.block_on(db.user());
    let (session, mut token) = rt
        .block_on(repo.create(&NewSession::new(user, DAY)))
        .unwrap();
    for _ in 0..3 {
        token = match rt.block_on(repo.rotate(token.expose_secret())).unwrap() {
            Rotation::Rotated { token, .. } => token,
            other => panic!("rotation: {other:?}"),
        };
    }
    rt.block_on(repo.create(&NewSession::new(other_user, DAY)))
        .unwrap();
    let real = oracle(token.expose_secret()).expect("a real token is well formed");
    assert_eq!(
        (real.user, real.session, real.generation),
        (user, session.id, 3)
    );
    let rows_before = rt.block_on(async { all_rows(&db.client().await).await });

    let mut runner = TestRunner::new(config(400));
    let well_formed = std::cell::Cell::new(0u32);
    let strategy = prop_oneof![2 => presented(), 1 => aimed_at(real, other_user)];
    let result = runner.run(&strategy, |text| {
        rt.block_on(async {
            let found = repo.find_by_token(&text).await;
            let validated = repo.validate(&text).await;
            let rotated = repo.rotate(&text).await;
            match oracle(&text) {
                Some(_) => {
                    prop_assert_ne!(&text, token.expose_secret());
                    well_formed.set(well_formed.get() + 1);
                    prop_assert!(matches!(found, Ok(None)), "find_by_token: {found:?}");
                    prop_assert!(
                        matches!(validated, Ok(Validation::Unknown)),
                        "validate: {validated:?}"
                    );
                    // The last generation too: unknown, not an input error.
                    prop_assert!(
                        matches!(rotated, Ok(Rotation::Unknown)),
                        "rotate: {rotated:?}"
                    );
                }
                None => {
                    prop_assert!(
                        matches!(found, Err(Error::MalformedToken)),
                        "find: {found:?}"
                    );
                    prop_assert!(
                        matches!(validated, Err(Error::MalformedToken)),
                        "validate: {validated:?}"
                    );
                    prop_assert!(
                        matches!(rotated, Err(Error::MalformedToken)),
                        "rotate: {rotated:?}"
                    );
                }
            }
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    println!("{} well-formed tokens looked up", well_formed.get());
    assert!(well_formed.get() > 50, "well-formed tokens are exercised");
    assert_eq!(
        rt.block_on(async { all_rows(&db.client().await).await }),
        rows_before,
        "lookups of unknown tokens changed a session"
    );
    // The real token still opens its session.
    let found = rt
        .block_on(repo.find_by_token(token.expose_secret()))
        .unwrap();
    assert_eq!(found.map(|s| s.id), Some(session.id));
}

//! Property-based tests: token and hash parsing for any text, and every text input of a
//! session round-tripping through a real repository (or being refused before anything is
//! written).

mod common;

use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, InputProblem, MAX_DEVICE_INFO_CHARS, MAX_USER_AGENT_CHARS, NewSession,
    RefreshToken, Rotation, RotationKey, SessionPolicy, SessionRepo, TokenHash, Validation,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestDb;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::string::string_regex;
use proptest::test_runner::{TestCaseError, TestRunner};
use sha2::{Digest, Sha256};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const URL_SAFE_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An independent oracle: 43 characters of the URL-safe alphabet whose last character leaves
/// the two padding bits zero (43 * 6 = 258 bits for 256), i.e. canonical unpadded base64 of
/// 32 bytes.
fn is_canonical_token(text: &str) -> bool {
    let index = |b: u8| URL_SAFE_ALPHABET.iter().position(|&a| a == b);
    text.len() == 43
        && text.bytes().all(|b| index(b).is_some())
        && index(text.as_bytes()[42]).is_some_and(|i| i % 4 == 0)
}

fn is_lower_hex_64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_token_parse(input: &str) -> Result<(), TestCaseError> {
    match RefreshToken::parse(input) {
        Ok(token) => {
            prop_assert_eq!(token.expose_secret(), input);
            prop_assert_eq!(input.chars().count(), 43);
            prop_assert!(is_canonical_token(input), "accepted a non-canonical token");
            let expected = hex::encode(Sha256::digest(input.as_bytes()));
            let hash = token.hash();
            prop_assert_eq!(hash.as_str(), expected.as_str());
            prop_assert!(TokenHash::from_hex(hash.as_str()).is_ok());
            prop_assert_eq!(input.parse::<RefreshToken>().ok(), Some(token));
        }
        Err(Error::MalformedToken) => {
            prop_assert!(!is_canonical_token(input), "refused a canonical token");
            prop_assert!(input.parse::<RefreshToken>().is_err());
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

fn check_hash_parse(input: &str) -> Result<(), TestCaseError> {
    match TokenHash::from_hex(input) {
        Ok(hash) => {
            prop_assert!(is_lower_hex_64(input), "accepted {input:?}");
            prop_assert_eq!(hash.as_str(), input);
        }
        Err(Error::MalformedToken) => prop_assert!(!is_lower_hex_64(input), "refused {input:?}"),
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

/// 40 to 46 characters, mostly base64url, with a few others (padding, standard base64,
/// whitespace, NUL, multi-byte).
fn base64ish() -> impl Strategy<Value = String> {
    string_regex("[A-Za-z0-9_\\-]{40,46}|[A-Za-z0-9_\\-+/=. \t\0é€😀]{40,46}").unwrap()
}

/// Well-formed tokens: 42 free characters and a last one with zero padding bits.
fn canonical_token() -> impl Strategy<Value = String> {
    string_regex("[A-Za-z0-9_\\-]{42}[AEIMQUYcgkosw048]").unwrap()
}

/// Any presented token text: arbitrary, nearly well-formed, or well-formed.
fn presented() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        base64ish(),
        canonical_token(),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn token_parsing_of_lossy_bytes(bytes in prop_oneof![
        vec(any::<u8>(), 0..80),
        vec(prop_oneof![3 => prop::sample::select(URL_SAFE_ALPHABET), 1 => any::<u8>()], 40..46),
    ]) {
        check_token_parse(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn token_parsing_of_any_string(text in any::<String>()) {
        check_token_parse(&text)?;
    }

    #[test]
    fn token_parsing_near_the_format(text in prop_oneof![base64ish(), canonical_token()]) {
        check_token_parse(&text)?;
    }

    #[test]
    fn every_32_bytes_encode_to_a_token_that_parses_back(bytes in any::<[u8; 32]>()) {
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let token = RefreshToken::parse(&text);
        prop_assert!(token.is_ok(), "refused the encoding of {bytes:?}");
        let token = token.unwrap();
        prop_assert_eq!(token.expose_secret(), text.as_str());
        // Successors are well-formed tokens too, and never the presented one.
        let key = RotationKey::from_bytes(&[9; 32]).unwrap();
        let next = key.successor(&token);
        prop_assert!(is_canonical_token(next.expose_secret()));
        prop_assert_ne!(next, token);
    }

    #[test]
    fn hash_parsing(text in prop_oneof![
        any::<String>(),
        string_regex("[0-9a-fA-Fg]{62,66}").unwrap(),
        string_regex("[0-9a-f]{64}").unwrap(),
        any::<[u8; 32]>().prop_map(hex::encode),
        vec(any::<u8>(), 60..70).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        check_hash_parse(&text)?;
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
    );
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

#[test]
fn find_validate_and_rotate_of_any_presented_text_are_typed_and_never_panic() {
    let rt = runtime();
    let db = rt.block_on(TestDb::new());
    let key = RotationKey::from_bytes(&[3; 32]).unwrap();
    let repo =
        SessionRepo::with_policy(db.pool.clone(), SessionPolicy::default().rotation_key(key));
    // One real session, so the table is not empty.
    let user = rt.block_on(db.user());
    rt.block_on(repo.create(&NewSession::new(user, DAY)))
        .unwrap();
    let rows_before = rt.block_on(db.session_rows());

    let mut runner = TestRunner::new(config(300));
    let well_formed = std::cell::Cell::new(0u32);
    let result = runner.run(&presented(), |text| {
        rt.block_on(async {
            let found = repo.find_by_token(&text).await;
            let validated = repo.validate(&text).await;
            let rotated = repo.rotate(&text).await;
            if is_canonical_token(&text) {
                well_formed.set(well_formed.get() + 1);
                prop_assert!(matches!(found, Ok(None)), "find_by_token: {found:?}");
                prop_assert!(
                    matches!(validated, Ok(Validation::Unknown)),
                    "validate: {validated:?}"
                );
                prop_assert!(
                    matches!(rotated, Ok(Rotation::Unknown)),
                    "rotate: {rotated:?}"
                );
            } else {
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
            // A well-formed hash of nothing stored finds nothing.
            let hash = TokenHash::from_hex(&hex::encode(Sha256::digest(text.as_bytes()))).unwrap();
            let by_hash = repo.find_by_token_hash(&hash).await;
            prop_assert!(
                matches!(by_hash, Ok(None)),
                "find_by_token_hash: {by_hash:?}"
            );
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    println!("{} well-formed random tokens looked up", well_formed.get());
    assert!(well_formed.get() > 30, "well-formed tokens are exercised");
    assert_eq!(
        rt.block_on(db.session_rows()),
        rows_before,
        "lookups wrote sessions"
    );
}

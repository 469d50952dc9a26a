//! Users and their credentials.

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::deadpool_postgres::tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::error::ApiError;
use crate::password::MAX_PASSWORD_BYTES;

/// The longest e-mail address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The e-mail address as stored: trimmed and lower-cased, after checking it is plausible.
pub fn normalise_email(email: &str) -> Result<String, ApiError> {
    if email.contains('\0') {
        return Err(ApiError::BadRequest(
            "invalid email: contains a NUL byte".into(),
        ));
    }
    let email = email.trim();
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(ApiError::BadRequest(format!(
            "invalid email: longer than {MAX_EMAIL_CHARS} characters"
        )));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !email.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(email.to_lowercase())
        }
        _ => Err(ApiError::BadRequest(
            "invalid email: not an e-mail address".into(),
        )),
    }
}

/// The shortest password that can be set, in characters (NIST SP 800-63B: at least 8, no
/// composition rules).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password that can be set, in characters (well above what people choose, a
/// passphrase included; at most 1 KiB of UTF-8).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a password being set (create-user): 8 to 256 characters, no NUL byte, nothing else
/// (no composition rules).
pub fn check_password(password: &str) -> Result<(), ApiError> {
    check_login_password(password)?;
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::BadRequest(format!(
            "invalid password: shorter than {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::BadRequest(format!(
            "invalid password: longer than {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks a password presented at login (before any hashing): not empty, no NUL byte, at most
/// [`MAX_PASSWORD_BYTES`] (the work an anonymous request can ask for). No minimum: a user
/// created under another rule still signs in.
pub fn check_login_password(password: &str) -> Result<(), ApiError> {
    if password.contains('\0') {
        return Err(ApiError::BadRequest(
            "invalid password: contains a NUL byte".into(),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "invalid password: longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.is_empty() {
        return Err(ApiError::BadRequest("invalid password: empty".into()));
    }
    Ok(())
}

/// Creates a user and their credentials in one transaction. `password_hash` is a PHC string.
pub async fn create_user(pool: &Pool, email: &str, password_hash: &str) -> Result<Uuid, ApiError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let id: Uuid = tx
        .query_one(
            "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
            &[&email],
        )
        .await?
        .get(0);
    let inserted = tx
        .query(
            "INSERT INTO auth.user_credentials (email, user_id, password_hash) VALUES ($1, $2, $3)
             RETURNING user_id",
            &[&email, &id, &password_hash],
        )
        .await;
    match inserted {
        Ok(_) => {}
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(ApiError::EmailTaken);
        }
        Err(err) => return Err(err.into()),
    }
    tx.commit().await?;
    Ok(id)
}

/// The user id and password hash registered for a normalised e-mail address.
pub async fn find_credentials(
    pool: &Pool,
    email: &str,
) -> Result<Option<(Uuid, String)>, ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT user_id, password_hash FROM auth.user_credentials WHERE email = $1",
            &[&email],
        )
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

//! Devices named in words ("Safari on iPhone", "Chrome on Linux") from a `User-Agent`, by
//! woothee's classifier (a cross-language project with a shared test set), not by patterns of
//! our own.

use std::sync::LazyLock;

use woothee::parser::Parser;

static PARSER: LazyLock<Parser> = LazyLock::new(Parser::new);

/// "Browser on system" for a `User-Agent` a classifier recognises, else `None`.
pub fn device_in_words(user_agent: &str) -> Option<String> {
    let found = PARSER.parse(user_agent)?;
    let known = |value: &str| !value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN;
    let browser = known(found.name).then_some(found.name);
    let system = known(found.os).then(|| system_name(found.os));
    match (browser, system) {
        (Some(browser), Some(system)) => Some(format!("{browser} on {system}")),
        (Some(browser), None) => Some(browser.to_owned()),
        (None, Some(system)) if found.category != "crawler" => {
            Some(format!("A browser on {system}"))
        }
        _ => None,
    }
}

/// The systems' names as their makers write them today.
fn system_name(os: &str) -> &str {
    match os {
        "Mac OSX" => "macOS",
        "iOS" => "iOS",
        other => other,
    }
}

/// The label a device is shown with: its stored label put in words when it is a `User-Agent`
/// (`product/version` tokens: sessions created before labels were named at login), else as is
/// (a label in words already, or one a client chose).
pub fn device_label(stored: Option<&str>) -> String {
    match stored {
        Some(label) if label.contains('/') => {
            device_in_words(label).unwrap_or_else(|| label.to_owned())
        }
        Some(label) => label.to_owned(),
        None => "Unknown device".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_in_words() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Windows 10",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
        ];
        for (ua, words) in cases {
            assert_eq!(device_in_words(ua).as_deref(), Some(words), "{ua}");
        }
    }

    #[test]
    fn labels_that_are_no_user_agent_stay_as_they_are() {
        assert_eq!(device_in_words("Phone app"), None);
        assert_eq!(device_label(Some("Phone app")), "Phone app");
        assert_eq!(device_label(None), "Unknown device");
        // A label already in words is not parsed again.
        assert_eq!(device_label(Some("Safari on iPhone")), "Safari on iPhone");
        assert_eq!(
            device_label(Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36"
            )),
            "Chrome on Linux"
        );
    }
}

//! Conditional requests (RFC 9110 section 13): `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, `If-Range`.

use std::time::{Duration, SystemTime};

use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};

/// The validators of one representation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validators<'a> {
    /// A strong entity-tag, quotes included: `"..."`.
    pub etag: Option<&'a str>,
    /// Whole seconds: HTTP dates carry no more.
    pub last_modified: Option<SystemTime>,
}

/// The outcome of evaluating the preconditions of a GET or HEAD request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Send the representation; honour `Range` only if `range_allowed`.
    Proceed { range_allowed: bool },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

impl Validators<'_> {
    /// RFC 9110 section 13.2.2, for GET and HEAD. `now` decides whether the
    /// modification date is old enough to be a strong validator for `If-Range`.
    pub fn evaluate(&self, headers: &HeaderMap, now: SystemTime) -> Precondition {
        if headers.contains_key(header::IF_MATCH) {
            if !self.tag_list_matches(headers, header::IF_MATCH, true) {
                return Precondition::Failed;
            }
        } else if let (Some(since), Some(modified)) = (date(headers, header::IF_UNMODIFIED_SINCE), self.last_modified)
            && modified > since
        {
            return Precondition::Failed;
        }
        if headers.contains_key(header::IF_NONE_MATCH) {
            if self.tag_list_matches(headers, header::IF_NONE_MATCH, false) {
                return Precondition::NotModified;
            }
        } else if let (Some(since), Some(modified)) = (date(headers, header::IF_MODIFIED_SINCE), self.last_modified)
            && modified <= since
        {
            return Precondition::NotModified;
        }
        let range_allowed = match headers.get(header::IF_RANGE) {
            None => true,
            Some(value) => self.if_range_matches(value, now),
        };
        Precondition::Proceed { range_allowed }
    }

    /// Whether any tag in the (possibly repeated) list header matches; `*`
    /// matches any existing representation. A malformed list matches nothing.
    fn tag_list_matches(&self, headers: &HeaderMap, name: header::HeaderName, strong: bool) -> bool {
        let mut any = false;
        for value in headers.get_all(&name) {
            let Some(list) = EntityTagList::parse(value.as_bytes()) else {
                return false;
            };
            any |= match list {
                EntityTagList::Any => true,
                EntityTagList::Tags(tags) => tags.iter().any(|t| self.tag_matches(t, strong)),
            };
        }
        any
    }

    fn tag_matches(&self, tag: &EntityTag<'_>, strong: bool) -> bool {
        let Some(ours) = self.etag else {
            return false;
        };
        (!strong || !tag.weak) && tag.opaque == ours.as_bytes()
    }

    /// `If-Range`: a strong entity-tag that equals ours, or a date equal to a
    /// modification date at least one second older than `now` (RFC 9110
    /// section 8.8.2.2). Weak tags and anything malformed never match.
    fn if_range_matches(&self, value: &HeaderValue, now: SystemTime) -> bool {
        let bytes = value.as_bytes();
        if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
            return match EntityTagList::parse(bytes) {
                Some(EntityTagList::Tags(tags)) if tags.len() == 1 => self.tag_matches(&tags[0], true),
                _ => false,
            };
        }
        let (Some(date), Some(modified)) = (parse_date(value), self.last_modified) else {
            return false;
        };
        date == modified && modified + Duration::from_secs(1) <= now
    }
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    // A repeated date header is invalid; RFC 9110 says to ignore it.
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_date(first)
}

fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

#[derive(Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    /// Quotes included.
    opaque: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
enum EntityTagList<'a> {
    Any,
    Tags(Vec<EntityTag<'a>>),
}

impl<'a> EntityTagList<'a> {
    /// `"*" / #entity-tag`. Commas may appear inside the quotes.
    fn parse(s: &'a [u8]) -> Option<EntityTagList<'a>> {
        let trimmed = s.trim_ascii();
        if trimmed == b"*" {
            return Some(EntityTagList::Any);
        }
        let mut tags = Vec::new();
        let mut rest = trimmed;
        loop {
            rest = rest.trim_ascii_start();
            match rest {
                [] => break,
                [b',', tail @ ..] => {
                    rest = tail;
                    continue;
                }
                _ => {}
            }
            let weak = rest.starts_with(b"W/");
            if weak {
                rest = &rest[2..];
            }
            if rest.first() != Some(&b'"') {
                return None;
            }
            let close = 1 + rest[1..].iter().position(|&b| b == b'"')?;
            let opaque = &rest[..=close];
            if !opaque[1..close].iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
                return None;
            }
            tags.push(EntityTag { weak, opaque });
            rest = rest[close + 1..].trim_ascii_start();
            match rest {
                [] => break,
                [b',', tail @ ..] => rest = tail,
                _ => return None,
            }
        }
        (!tags.is_empty()).then_some(EntityTagList::Tags(tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc\"";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn eval(pairs: &[(&str, &str)]) -> Precondition {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let v = Validators { etag: Some(ETAG), last_modified: Some(at(1_000_000_000)) };
        v.evaluate(&headers, at(1_000_000_100))
    }

    const PROCEED: Precondition = Precondition::Proceed { range_allowed: true };
    const NO_RANGE: Precondition = Precondition::Proceed { range_allowed: false };
    // 1_000_000_000 as an HTTP date.
    const MODIFIED: &str = "Sun, 09 Sep 2001 01:46:40 GMT";
    const EARLIER: &str = "Sun, 09 Sep 2001 01:46:39 GMT";

    #[test]
    fn if_none_match() {
        assert_eq!(eval(&[("if-none-match", "\"abc\"")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "W/\"abc\"")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\", \"abc\"")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\"")]), PROCEED);
        assert_eq!(eval(&[("if-none-match", "abc")]), PROCEED);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(eval(&[("if-none-match", "\"x\""), ("if-modified-since", MODIFIED)]), PROCEED);
    }

    #[test]
    fn if_match() {
        assert_eq!(eval(&[("if-match", "\"abc\"")]), PROCEED);
        assert_eq!(eval(&[("if-match", "*")]), PROCEED);
        assert_eq!(eval(&[("if-match", "W/\"abc\"")]), Precondition::Failed);
        assert_eq!(eval(&[("if-match", "\"x\"")]), Precondition::Failed);
        assert_eq!(eval(&[("if-unmodified-since", EARLIER)]), Precondition::Failed);
        assert_eq!(eval(&[("if-unmodified-since", MODIFIED)]), PROCEED);
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(eval(&[("if-modified-since", MODIFIED)]), Precondition::NotModified);
        assert_eq!(eval(&[("if-modified-since", EARLIER)]), PROCEED);
        assert_eq!(eval(&[("if-modified-since", "yesterday")]), PROCEED);
    }

    #[test]
    fn if_range() {
        assert_eq!(eval(&[("if-range", "\"abc\"")]), PROCEED);
        assert_eq!(eval(&[("if-range", "W/\"abc\"")]), NO_RANGE);
        assert_eq!(eval(&[("if-range", "\"x\"")]), NO_RANGE);
        assert_eq!(eval(&[("if-range", "\"abc\", \"x\"")]), NO_RANGE);
        assert_eq!(eval(&[("if-range", MODIFIED)]), PROCEED);
        assert_eq!(eval(&[("if-range", EARLIER)]), NO_RANGE);
        assert_eq!(eval(&[("if-range", "garbage")]), NO_RANGE);
        // A date is a strong validator only a second after the modification.
        let v = Validators { etag: Some(ETAG), last_modified: Some(at(1_000_000_000)) };
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_RANGE, HeaderValue::from_static(MODIFIED));
        assert_eq!(v.evaluate(&headers, at(1_000_000_000)), NO_RANGE);
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(
            EntityTagList::parse(b" \"a,b\" ,W/\"\" "),
            Some(EntityTagList::Tags(vec![
                EntityTag { weak: false, opaque: b"\"a,b\"" },
                EntityTag { weak: true, opaque: b"\"\"" },
            ]))
        );
        for bad in [&b""[..], b"\"a", b"a", b"\"a\" \"b\"", b"W/ \"a\"", b"\"a\"b", b"**"] {
            assert_eq!(EntityTagList::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}

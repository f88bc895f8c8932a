//! Routes answered from memory instead of the served directory.

use bytes::Bytes;

/// Extra paths answered from memory, looked up before the served directory
/// (the sync layer plugs in the checkpoint and tlog tiles this way).
///
/// `lookup` runs on the async runtime for every GET and HEAD request: it must
/// be quick and must not block.
pub trait Overlay: Send + Sync + 'static {
    /// The body for a percent-decoded URL path such as `/checkpoint`, or
    /// `None` to fall through to the served directory.
    fn lookup(&self, path: &str) -> Option<OverlayBody>;
}

/// A body served by an [`Overlay`]. Ranges and HEAD work on it as on files.
/// It has no validators (no `ETag` nor `Last-Modified`), so an `If-Range`
/// never matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayBody {
    /// The whole representation.
    pub bytes: Bytes,
    /// Its `Content-Type`, e.g. `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// Its `Cache-Control`, if any, e.g. `max-age=5`.
    pub cache_control: Option<&'static str>,
}

impl OverlayBody {
    /// A `text/plain; charset=utf-8` body.
    pub fn text(text: impl Into<Bytes>) -> OverlayBody {
        OverlayBody { bytes: text.into(), content_type: "text/plain; charset=utf-8", cache_control: None }
    }

    /// An `application/octet-stream` body.
    pub fn binary(bytes: impl Into<Bytes>) -> OverlayBody {
        OverlayBody { bytes: bytes.into(), content_type: "application/octet-stream", cache_control: None }
    }

    /// The same body with a `Cache-Control` header.
    pub fn cache_control(mut self, value: &'static str) -> OverlayBody {
        self.cache_control = Some(value);
        self
    }
}

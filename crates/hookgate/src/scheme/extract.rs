//! Reads what each scheme signs out of a request: signatures, timestamp, id and the exact
//! signed bytes. Parsing only; comparison happens in the verifier.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use smallvec::{SmallVec, smallvec};

use super::generic::{GenericHmac, Part};
use super::preset::{Shape, Source, TimeFormat};
use super::{Scheme, SchemeId};
use crate::encoding::{BASE64, BASE64_URL, Encoding, hex};
use crate::event::{DedupRecipe, Field};
use crate::headers::Headers;
use crate::reason::{Reason, Rejection};
use crate::request::RequestContext;

/// Most signature entries considered in one request; more is treated as malformed, so a
/// header with thousands of entries costs bounded time.
pub(crate) const MAX_SIGNATURES: usize = 32;

/// Most Ed25519 entries considered in one Standard Webhooks v1a header. Each costs a full
/// verification over the body (HMAC tags are computed once per key instead); senders send one
/// per active key, so 4 leaves room for a rotation.
pub(crate) const MAX_ASYMMETRIC_SIGNATURES: usize = 4;

/// The signed bytes, as pieces fed to the MAC in order (up to five kept inline: no preset's
/// usual message allocates).
pub(crate) type Message<'a> = SmallVec<[Cow<'a, [u8]>; 5]>;

/// Alternative signed messages: almost always one, kept inline.
pub(crate) type Messages<'a> = SmallVec<[Message<'a>; 1]>;

/// A decoded candidate signature: up to 32 bytes (an HMAC-SHA256 or -SHA1 tag) kept inline.
pub(crate) type Candidate = SmallVec<[u8; 32]>;

/// Everything the verifier needs from one request.
#[derive(Debug)]
pub(crate) struct Extracted<'a> {
    /// Alternative signed messages; a signature over any of them counts (Twilio's port
    /// variants). Almost always one.
    pub(crate) messages: Messages<'a>,
    /// Decoded candidate signatures (entries that failed to decode are dropped: they can
    /// never match).
    pub(crate) signatures: SmallVec<[Candidate; 2]>,
    /// The signed timestamp in Unix milliseconds and where it came from.
    pub(crate) timestamp: Option<(i64, &'static str)>,
    /// Check the window only after the signature (the timestamp is read from the body).
    pub(crate) timestamp_after_signature: bool,
    /// The signed hex SHA-256 of the body and where it came from: Twilio's signed URL
    /// (`bodySHA256`), Netlify's JWS claim.
    pub(crate) body_sha256: Option<(String, &'static str)>,
    pub(crate) mismatch: Reason,
    pub(crate) signature_location: &'static str,
    pub(crate) delivery_id: Field,
    pub(crate) event_type: Field,
    pub(crate) dedup: DedupRecipe,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Where in the body a secret travels (Figma's `passcode` value, Microsoft Graph's
    /// `clientState`s), in order and disjoint: replaced in the verified event's body, so that
    /// no sink ever sees it.
    pub(crate) redact: Vec<Range<usize>>,
    /// `signatures[i]` belongs to key `i` alone (Box: the primary key signs
    /// `box-signature-primary`, the secondary `box-signature-secondary`).
    pub(crate) paired: bool,
    /// How far ahead of the clock the timestamp may be, when the sender allows less than the
    /// window (Box: none).
    pub(crate) future_tolerance_ms: Option<i64>,
}

impl<'a> Extracted<'a> {
    pub(crate) fn new(messages: impl Into<Messages<'a>>, signature_location: &'static str) -> Self {
        Extracted {
            messages: messages.into(),
            signatures: SmallVec::new(),
            timestamp: None,
            timestamp_after_signature: false,
            body_sha256: None,
            mismatch: Reason::SignatureMismatch,
            signature_location,
            delivery_id: Field::Known(None),
            event_type: Field::Known(None),
            dedup: DedupRecipe::Body,
            headers: Vec::new(),
            redact: Vec::new(),
            paired: false,
            future_tolerance_ms: None,
        }
    }
}

pub(crate) fn reject(reason: Reason, location: &'static str) -> Rejection {
    Rejection::new(reason, location)
}

/// The one value of a header: `None` when absent or empty; malformed when it appears with
/// different values or is not visible ASCII.
pub(crate) fn single<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    single_value(headers, name).map_err(|()| reject(Reason::MalformedHeader, name))
}

/// The one value of a header (absent or blank: `None`); `Err` when it repeats with different
/// values or holds anything but visible ASCII.
fn single_value<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &str,
) -> Result<Option<&'h str>, ()> {
    let mut found: Option<&'h [u8]> = None;
    let mut conflict = false;
    headers.visit(name, &mut |value| {
        note(&mut found, &mut conflict, value);
        !conflict
    });
    settle(found, conflict)
}

/// Takes one value of a header that must have one: blank values are ignored, a different
/// second value (surrounding whitespace aside) is a conflict. The first is kept as sent.
fn note<'h>(found: &mut Option<&'h [u8]>, conflict: &mut bool, value: &'h [u8]) {
    if value.trim_ascii().is_empty() {
        return;
    }
    match *found {
        Some(previous) if previous.trim_ascii() != value.trim_ascii() => *conflict = true,
        Some(_) => {}
        None => *found = Some(value),
    }
}

/// The value noted for a header, if it is one value of visible ASCII.
fn settle(found: Option<&[u8]>, conflict: bool) -> Result<Option<&str>, ()> {
    if conflict {
        return Err(());
    }
    match found.map(<[u8]>::trim_ascii) {
        None => Ok(None),
        Some(bytes) if visible_ascii(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// Whether every byte is visible ASCII or a space. No early exit: the loop compiles to
/// vector instructions, several times faster than `all` on a signature-sized value.
fn visible_ascii(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |visible, b| visible & (0x20..0x7f).contains(b))
}

/// Most header names [`Prefetched`] reads in one walk.
const MAX_PREFETCHED: usize = 16;

/// What [`single`] says of each of a preset's header names — its shape's and those its event
/// information comes from — read in one walk over the headers instead of one lookup per
/// name: a lookup in an `http::HeaderMap` parses and hashes the name, which costs about as
/// much as comparing a dozen names. Names beyond [`MAX_PREFETCHED`], and names not read,
/// are looked up when asked for.
pub(crate) struct Prefetched<'h> {
    names: [&'static str; MAX_PREFETCHED],
    len: usize,
    /// What [`note`] kept of each name (its first non-blank line as sent), settled when
    /// asked for.
    found: [Option<&'h [u8]>; MAX_PREFETCHED],
    conflict: [bool; MAX_PREFETCHED],
    /// How many lines each name came in, blank ones too (counting stops at 255).
    lines: [u8; MAX_PREFETCHED],
}

impl<'h> Prefetched<'h> {
    /// Reads `names` (repeats are harmless) in one walk over `headers`.
    fn read<H: Headers + ?Sized>(
        headers: &'h H,
        names: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        let mut out = Prefetched::none();
        for (slot, name) in out.names.iter_mut().zip(names) {
            *slot = name;
            out.len = out.len.saturating_add(1);
        }
        let names = out.names.get(..out.len).unwrap_or_default();
        let (found, conflict, lines) = (&mut out.found, &mut out.conflict, &mut out.lines);
        headers.visit_names(names, &mut |index, value| {
            if let (Some(found), Some(conflict), Some(lines)) = (
                found.get_mut(index),
                conflict.get_mut(index),
                lines.get_mut(index),
            ) {
                note(found, conflict, value);
                *lines = lines.saturating_add(1);
            }
            true
        });
        out
    }

    /// Nothing read: every name is looked up when asked for.
    fn none() -> Self {
        Prefetched {
            names: [""; MAX_PREFETCHED],
            len: 0,
            found: [None; MAX_PREFETCHED],
            conflict: [false; MAX_PREFETCHED],
            lines: [0; MAX_PREFETCHED],
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.get(..self.len)?.iter().position(|read| {
            read.len() == name.len()
                && (std::ptr::eq(read.as_ptr(), name.as_ptr()) || read.eq_ignore_ascii_case(name))
        })
    }

    /// As [`single`].
    fn single<H: Headers + ?Sized>(
        &self,
        headers: &'h H,
        name: &'static str,
    ) -> Result<Option<&'h str>, Rejection> {
        let read = self
            .index(name)
            .and_then(|index| Some((*self.found.get(index)?, *self.conflict.get(index)?)));
        match read {
            Some((found, conflict)) => {
                settle(found, conflict).map_err(|()| reject(Reason::MalformedHeader, name))
            }
            None => single(headers, name),
        }
    }

    /// As [`required`].
    fn required<H: Headers + ?Sized>(
        &self,
        headers: &'h H,
        name: &'static str,
    ) -> Result<&'h str, Rejection> {
        self.single(headers, name)?
            .ok_or_else(|| reject(Reason::MissingHeader, name))
    }

    /// The header's line as sent when it came in exactly one line, not blank; `None` when it
    /// came in several or was not read.
    fn only_line(&self, name: &str) -> Option<&'h [u8]> {
        let index = self.index(name)?;
        match self.lines.get(index) {
            Some(1) => self.found.get(index).copied().flatten(),
            _ => None,
        }
    }
}

/// The header names a source of event information reads.
fn source_headers(source: Source) -> &'static [&'static str] {
    match source {
        Source::Header(names) => names,
        Source::Shape | Source::Json(_) => &[],
    }
}

pub(crate) fn required<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'static str,
) -> Result<&'h str, Rejection> {
    single(headers, name)?.ok_or_else(|| reject(Reason::MissingHeader, name))
}

/// Strict Unix seconds: ASCII digits only (no sign, no fraction), converted to milliseconds.
pub(crate) fn parse_unix_seconds(text: &str) -> Option<i64> {
    parse_digits(text)?.checked_mul(1000)
}

/// ASCII digits only, as an `i64` (`None` when empty, anything else, or too large): one pass
/// instead of a check and then `str::parse`.
fn parse_digits(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0i64, |value, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        value.checked_mul(10)?.checked_add(i64::from(digit))
    })
}

/// A Standard Webhooks (or Paddle) timestamp: decimal digits after an optional `+`, the form
/// every official library accepts (JavaScript `parseInt`, Python `float`/`int`, Rust
/// `i64::from_str`).
/// Forms only some of them accept — surrounding spaces, a fraction, trailing text — are
/// refused.
fn standard_timestamp(text: &str) -> Option<i64> {
    parse_digits(text.strip_prefix('+').unwrap_or(text))
}

/// The decimal form of `number`, parsed from `text` by [`standard_timestamp`]: `text`
/// itself when it is already that form (no `+`, no leading zero), so nothing is allocated
/// for what senders send.
fn decimal(text: &str, number: i64) -> Cow<'_, [u8]> {
    if text == "0" || !text.starts_with(['+', '0']) {
        bytes(text)
    } else {
        Cow::Owned(number.to_string().into_bytes())
    }
}

fn timestamp_seconds(text: &str, location: &'static str) -> Result<(i64, &'static str), Rejection> {
    parse_unix_seconds(text)
        .map(|ms| (ms, location))
        .ok_or_else(|| reject(Reason::InvalidTimestamp, location))
}

fn rfc3339_millis(text: &str) -> Option<i64> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

fn bytes(text: &str) -> Cow<'_, [u8]> {
    Cow::Borrowed(text.as_bytes())
}

fn literal(text: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(text.as_bytes())
}

fn known<'h, H: Headers + ?Sized>(
    headers: &'h H,
    pre: &Prefetched<'h>,
    names: &[&'static str],
) -> Field {
    let value = names
        .iter()
        .find_map(|name| pre.single(headers, name).ok().flatten())
        .map(str::to_owned);
    Field::Known(value)
}

fn collect_headers<'h, H: Headers + ?Sized>(
    headers: &'h H,
    pre: &Prefetched<'h>,
    names: &[&'static str],
) -> Vec<(&'static str, String)> {
    names
        .iter()
        .filter_map(|name| {
            pre.single(headers, name)
                .ok()
                .flatten()
                .map(|v| (*name, v.to_owned()))
        })
        .collect()
}

/// Pushes a decoded candidate, enforcing [`MAX_SIGNATURES`].
fn push_candidate(
    out: &mut SmallVec<[Candidate; 2]>,
    seen: &mut usize,
    encoding: Encoding,
    text: &str,
    location: &'static str,
) -> Result<(), Rejection> {
    push_candidate_up_to(out, seen, MAX_SIGNATURES, encoding, text, location)
}

/// Pushes a decoded candidate; more than `limit` entries are malformed.
fn push_candidate_up_to(
    out: &mut SmallVec<[Candidate; 2]>,
    seen: &mut usize,
    limit: usize,
    encoding: Encoding,
    text: &str,
    location: &'static str,
) -> Result<(), Rejection> {
    *seen = seen.saturating_add(1);
    if *seen > limit {
        return Err(reject(Reason::MalformedHeader, location));
    }
    if let Some(decoded) = encoding.decode_inline(text.as_bytes()) {
        out.push(decoded);
    }
    Ok(())
}

pub(crate) fn extract<'a, H: Headers + ?Sized>(
    scheme: &Scheme,
    headers: &'a H,
    body: &'a [u8],
    request: RequestContext<'a>,
) -> Result<Extracted<'a>, Rejection> {
    match scheme {
        Scheme::Generic(generic) => generic_hmac(generic, headers, body),
        Scheme::Preset(id) => preset(*id, headers, body, request),
    }
}

fn preset<'a, H: Headers + ?Sized>(
    id: SchemeId,
    h: &'a H,
    body: &'a [u8],
    request: RequestContext<'a>,
) -> Result<Extracted<'a>, Rejection> {
    let preset = id.preset();
    let info = &preset.info;
    let url = request.url();
    let needs_url = || url.ok_or_else(|| reject(Reason::MissingHeader, "url"));
    // Every header the shape reads and the event information comes from, in one walk.
    let (first, family, more): (Option<&'static str>, &[&str], &[&str]) = match preset.shape {
        Shape::Standard { family, .. } => (None, family.names, &[]),
        Shape::KeyValue(kv) => (Some(kv.header), &[], &[]),
        Shape::BodyHmac { header, .. }
        | Shape::UrlAndBody { header, .. }
        | Shape::Token { header } => (Some(header), &[], &[]),
        Shape::Shopify => {
            use super::preset::{SHOPIFY_EVENTS, SHOPIFY_WEBHOOKS};
            (None, SHOPIFY_EVENTS.headers, SHOPIFY_WEBHOOKS.headers)
        }
        _ => (None, &[], &[]),
    };
    let pre = Prefetched::read(
        h,
        first
            .into_iter()
            .chain(family.iter().copied())
            .chain(more.iter().copied())
            .chain(source_headers(info.event_type).iter().copied())
            .chain(source_headers(info.delivery_id).iter().copied())
            .chain(info.headers.iter().copied()),
    );
    let mut out = match preset.shape {
        Shape::Standard {
            family,
            version,
            other_versions_only,
        } => standard(
            h,
            &pre,
            body,
            family,
            version,
            Encoding::Base64,
            other_versions_only,
        )?,
        Shape::KeyValue(kv) => key_value(h, &pre, body, kv)?,
        Shape::BodyHmac {
            header,
            prefix,
            encoding,
        } => {
            let message = smallvec![Cow::Borrowed(body)];
            if prefix.is_empty() {
                bare(h, &pre, header, encoding, message)?
            } else {
                prefixed(h, &pre, header, prefix, encoding, message)?
            }
        }
        Shape::NumberedBodyHmac {
            first,
            prefix,
            max,
            encoding,
        } => numbered(h, body, first, prefix, max, encoding)?,
        Shape::PrefixedList {
            header,
            prefix,
            encoding,
            non_empty_body,
        } => prefixed_list(h, header, prefix, encoding, body, non_empty_body)?,
        Shape::Versioned {
            signature,
            timestamp,
            parsed_timestamp,
        } => versioned(h, body, signature, timestamp, parsed_timestamp)?,
        Shape::Timestamped {
            signature,
            timestamp,
            time,
            separator,
            encoding,
        } => timestamped(h, body, signature, timestamp, time, separator, encoding)?,
        Shape::UrlAndBody { header, encoding } => bare(
            h,
            &pre,
            header,
            encoding,
            smallvec![bytes(needs_url()?), Cow::Borrowed(body)],
        )?,
        Shape::Asymmetric {
            signature,
            timestamp,
            encoding,
        } => asymmetric(h, body, signature, timestamp, encoding)?,
        Shape::Token { header } => {
            let token = pre.required(h, header)?;
            let mut out = Extracted::new(Vec::new(), header);
            out.signatures.push(Candidate::from_slice(token.as_bytes()));
            out.mismatch = Reason::TokenMismatch;
            out
        }
        Shape::Shopify => shopify(h, &pre, body)?,
        Shape::Twitch => twitch(h, body)?,
        Shape::Linear => linear(h, body)?,
        Shape::Twilio { body_sha256 } => twilio(h, body, needs_url()?, body_sha256)?,
        Shape::HubspotV3 => hubspot_v3(h, body, request.method(), needs_url()?)?,
        Shape::BodyToken { field } => body_token(body, field)?,
        Shape::BodyTokenEach { array, field } => {
            super::body_tokens::every_element(body, array, field)?
        }
        Shape::Braintree => super::braintree::extract(body)?,
        Shape::Contentful => contentful(h, body, request.method(), needs_url()?)?,
        Shape::Box => box_signatures(h, body)?,
        Shape::Mailgun => mailgun(body)?,
        Shape::NetlifyJws => netlify(h)?,
        Shape::BasicAuth => basic_auth(h)?,
        Shape::UrlToken => super::azure_event_grid::extract(h, request.query())?,
    };
    // What the provider says about the event, and how retries are recognised.
    match info.event_type {
        Source::Shape => {}
        Source::Header(names) => out.event_type = known(h, &pre, names),
        Source::Json(paths) => out.event_type = Field::Json(paths),
    }
    match info.delivery_id {
        Source::Shape => {}
        Source::Header(names) => out.delivery_id = known(h, &pre, names),
        Source::Json(paths) => out.delivery_id = Field::Json(paths),
    }
    if let Some(paths) = info.dedup_json {
        out.dedup = DedupRecipe::Json(paths);
    }
    if !info.headers.is_empty() {
        out.headers = collect_headers(h, &pre, info.headers);
    }
    Ok(out)
}

/// The header names of a Standard Webhooks family, in order of preference.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Family {
    /// The spellings of the id, timestamp and signature headers, `spellings` of each, in
    /// order of preference.
    names: &'static [&'static str],
    spellings: usize,
}

impl Family {
    pub(crate) const ID: usize = 0;
    pub(crate) const TIMESTAMP: usize = 1;
    pub(crate) const SIGNATURE: usize = 2;

    /// The preferred spelling of header `slot` that is present, with its value.
    fn first<'h, H: Headers + ?Sized>(
        &self,
        headers: &'h H,
        pre: &Prefetched<'h>,
        slot: usize,
    ) -> Result<Option<(&'static str, &'h str)>, Rejection> {
        let spellings = self
            .names
            .iter()
            .skip(slot.saturating_mul(self.spellings))
            .take(self.spellings);
        for name in spellings {
            if let Some(value) = pre.single(headers, name)? {
                return Ok(Some((name, value)));
            }
        }
        Ok(None)
    }
}

impl Family {
    pub(crate) const WEBHOOK: Family = Family {
        names: &["webhook-id", "webhook-timestamp", "webhook-signature"],
        spellings: 1,
    };

    /// Svix sends `svix-*`, or `webhook-*` when white-labelled.
    pub(crate) const SVIX: Family = Family {
        names: &[
            "svix-id",
            "webhook-id",
            "svix-timestamp",
            "webhook-timestamp",
            "svix-signature",
            "webhook-signature",
        ],
        spellings: 2,
    };

    /// Clerk's SDK reads only the `svix-*` spellings.
    pub(crate) const SVIX_ONLY: Family = Family {
        names: &["svix-id", "svix-timestamp", "svix-signature"],
        spellings: 1,
    };

    /// The preferred spelling of header `slot` (what the signer writes).
    pub(crate) fn name(&self, slot: usize) -> &'static str {
        self.names
            .get(slot.saturating_mul(self.spellings))
            .copied()
            .unwrap_or("")
    }

    /// The preferred spelling of the signature header.
    pub(crate) fn signature_name(&self) -> &'static str {
        self.name(Family::SIGNATURE)
    }
}

/// Standard Webhooks and its white-labels: `{id}.{timestamp}.{body}`, a space-separated list
/// of `version,signature` entries; entries of other versions are skipped.
fn standard<'a, H: Headers + ?Sized>(
    h: &'a H,
    pre: &Prefetched<'a>,
    body: &'a [u8],
    family: Family,
    version: &str,
    encoding: Encoding,
    other_versions_only: Reason,
) -> Result<Extracted<'a>, Rejection> {
    // One walk over the headers found all three (and their Svix spellings).
    let (_, id) = family
        .first(h, pre, Family::ID)?
        .ok_or_else(|| reject(Reason::MissingHeader, "webhook-id"))?;
    let (ts_name, ts) = family
        .first(h, pre, Family::TIMESTAMP)?
        .ok_or_else(|| reject(Reason::MissingHeader, "webhook-timestamp"))?;
    let (sig_name, _) = family
        .first(h, pre, Family::SIGNATURE)?
        .ok_or_else(|| reject(Reason::MissingHeader, "webhook-signature"))?;

    // The libraries parse the timestamp and sign its decimal form (`{msg_id}.{timestamp}`
    // with the parsed number), not the header as sent: `+1614265330` and `01614265330` are
    // that instant, signed as `1614265330`.
    let seconds =
        standard_timestamp(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, ts_name))?;
    let millis = seconds
        .checked_mul(1000)
        .ok_or_else(|| reject(Reason::InvalidTimestamp, ts_name))?;
    let message = smallvec![
        bytes(id),
        literal("."),
        decimal(ts, seconds),
        literal("."),
        Cow::Borrowed(body),
    ];
    let mut out = Extracted::new(smallvec![message], sig_name);
    out.timestamp = Some((millis, ts_name));
    let mut seen = 0;
    let mut of_version = false;
    let mut result = Ok(());
    let limit = if version == "v1a" {
        MAX_ASYMMETRIC_SIGNATURES
    } else {
        MAX_SIGNATURES
    };
    // Every line of the header, so that repeated lines count toward the limit.
    let mut on_line = |value: &'a [u8]| {
        let Ok(value) = std::str::from_utf8(value) else {
            result = Err(reject(Reason::MalformedHeader, sig_name));
            return false;
        };
        for entry in value.split(' ').filter(|e| !e.is_empty()) {
            if let Some((entry_version, signature)) = entry.split_once(',') {
                if entry_version == version {
                    of_version = true;
                    result = push_candidate_up_to(
                        &mut out.signatures,
                        &mut seen,
                        limit,
                        encoding,
                        signature,
                        sig_name,
                    );
                    if result.is_err() {
                        return false;
                    }
                }
            }
        }
        true
    };
    // The walk that found the header saw its only line; several lines are visited again.
    match pre.only_line(sig_name) {
        Some(line) => {
            on_line(line);
        }
        None => h.visit(sig_name, &mut on_line),
    }
    result?;
    if !of_version {
        out.mismatch = other_versions_only;
    }
    out.delivery_id = Field::Known(Some(id.to_owned()));
    out.dedup = DedupRecipe::SignedDeliveryId;
    Ok(out)
}

/// Headers of `key=value` elements: Stripe and Prefinery (`t=…,v1=…`), Paddle (`ts=…;h1=…`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyValue {
    pub(crate) header: &'static str,
    pub(crate) separator: char,
    pub(crate) timestamp_key: &'static str,
    pub(crate) signature_key: &'static str,
    pub(crate) joiner: &'static str,
    /// Read the header as Paddle's SDKs do ([`paddle_signature`]) rather than as Stripe's;
    /// `@mux/mux-node`'s `parseHeader` reads `Mux-Signature` the same way.
    pub(crate) paddle: bool,
    /// Read the header as both of Stripe's official libraries do ([`stripe_signature`]).
    pub(crate) stripe: bool,
    /// Stripe's libraries say "no signatures found with expected scheme"; Paddle's say the
    /// header is malformed.
    pub(crate) no_signature: Reason,
    /// Persona: during a secret rotation one `t=…,v1=…` group per secret, separated by
    /// whitespace. Whitespace then separates entries too, and a repeated timestamp must be
    /// the same one (the groups are signed at the same instant).
    pub(crate) whitespace_groups: bool,
}

impl KeyValue {
    pub(crate) const STRIPE: KeyValue = KeyValue {
        header: "Stripe-Signature",
        separator: ',',
        timestamp_key: "t",
        signature_key: "v1",
        joiner: ".",
        paddle: false,
        stripe: false,
        no_signature: Reason::NoSupportedSignature,
        whitespace_groups: false,
    };
    pub(crate) const PREFINERY: KeyValue = KeyValue {
        header: "X-Prefinery-Signature",
        ..KeyValue::STRIPE
    };
    pub(crate) const PADDLE: KeyValue = KeyValue {
        header: "Paddle-Signature",
        separator: ';',
        timestamp_key: "ts",
        signature_key: "h1",
        joiner: ":",
        paddle: true,
        stripe: false,
        no_signature: Reason::MalformedHeader,
        whitespace_groups: false,
    };
}

fn key_value<'a, H: Headers + ?Sized>(
    h: &'a H,
    pre: &Prefetched<'a>,
    body: &'a [u8],
    kv: KeyValue,
) -> Result<Extracted<'a>, Rejection> {
    let value = pre.required(h, kv.header)?;
    if kv.paddle {
        return paddle_signature(value, body, kv);
    }
    if kv.stripe {
        return stripe_signature(value, body, kv);
    }
    let malformed = || reject(Reason::MalformedHeader, kv.header);
    let mut timestamp: Option<&str> = None;
    let mut signatures: SmallVec<[&str; 4]> = SmallVec::new();
    let separates =
        |c: char| c == kv.separator || (kv.whitespace_groups && c.is_ascii_whitespace());
    for element in value
        .split(separates)
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (key, val) = element.split_once('=').ok_or_else(malformed)?;
        if key == kv.timestamp_key {
            if timestamp.is_some_and(|t| !kv.whitespace_groups || t != val) {
                return Err(malformed());
            }
            timestamp = Some(val);
        } else if key == kv.signature_key {
            signatures.push(val);
        }
    }
    let ts = timestamp.filter(|t| !t.is_empty()).ok_or_else(malformed)?;
    let parsed_ts = timestamp_seconds(ts, kv.header)?;
    signed_timestamp_and_body(bytes(ts), parsed_ts, signatures, body, kv)
}

/// What both `ts=…, sig=…` readers end with: the signed message (the timestamp as signed,
/// the joiner, the body), the timestamp to check, and every signature as a hex candidate.
fn signed_timestamp_and_body<'a>(
    signed_ts: Cow<'a, [u8]>,
    timestamp: (i64, &'static str),
    signatures: SmallVec<[&'a str; 4]>,
    body: &'a [u8],
    kv: KeyValue,
) -> Result<Extracted<'a>, Rejection> {
    if signatures.is_empty() {
        return Err(reject(kv.no_signature, kv.header));
    }
    let message = smallvec![signed_ts, literal(kv.joiner), Cow::Borrowed(body)];
    let mut out = Extracted::new(smallvec![message], kv.header);
    out.timestamp = Some(timestamp);
    let mut seen = 0;
    for signature in signatures {
        push_candidate(
            &mut out.signatures,
            &mut seen,
            Encoding::Hex,
            signature,
            kv.header,
        )?;
    }
    Ok(out)
}

/// `Paddle-Signature: ts=…;h1=…`, read as both official SDKs read it (paddle-node-sdk
/// `WebhooksValidator`, paddle-python-sdk `PaddleSignature.parse`): parts split at `;` and
/// `=` with no trimming; a part without `=` (or with an empty value, for `h1`) is skipped;
/// the last `ts` wins; every `h1` is a candidate; other keys are skipped (Node; Python
/// raises). The timestamp is parsed (`parseInt`, `int`) and its decimal form signed, so
/// `+` and leading zeros are that instant. Where the two SDKs disagree — a second `=` in a
/// part, an empty `ts`, a fraction — the header is refused. `@mux/mux-node` reads
/// `Mux-Signature` (`,`, `t`, `v1`) the same way, and accepts those three too (a fraction, and
/// a `t` that is no number, which it signs as `NaN` and never expires); hookgate refuses them.
fn paddle_signature<'a>(
    value: &'a str,
    body: &'a [u8],
    kv: KeyValue,
) -> Result<Extracted<'a>, Rejection> {
    let malformed = || reject(Reason::MalformedHeader, kv.header);
    let mut timestamp: Option<&str> = None;
    let mut signatures: SmallVec<[&str; 4]> = SmallVec::new();
    for part in value.split(kv.separator) {
        let Some((key, val)) = part.split_once('=') else {
            continue;
        };
        if val.contains('=') {
            return Err(malformed());
        }
        if key == kv.timestamp_key {
            if val.is_empty() {
                return Err(malformed());
            }
            timestamp = Some(val);
        } else if key == kv.signature_key && !val.is_empty() {
            signatures.push(val);
        }
    }
    // `parseInt` and `int` both skip spaces around the number.
    let ts = timestamp.ok_or_else(malformed)?.trim_matches([' ', '\t']);
    let seconds =
        standard_timestamp(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, kv.header))?;
    let millis = seconds
        .checked_mul(1000)
        .ok_or_else(|| reject(Reason::InvalidTimestamp, kv.header))?;
    signed_timestamp_and_body(
        decimal(ts, seconds),
        (millis, kv.header),
        signatures,
        body,
        kv,
    )
}

/// `Stripe-Signature: t=…,v1=…[,v1=…]` read as both official libraries read it
/// (stripe-node's `parseHeader`, stripe-python's `_get_timestamp_and_signatures`): items
/// split on `,`, each on `=`, the value running to the next `=` (`v1=<hex>=x` is `<hex>`);
/// keys compared as they are (` v1=…` is no signature, and no `t`); other items ignored;
/// the timestamp parsed as an integer after optional spaces and a `+` (`parseInt`, `int`)
/// and its decimal form signed (`${t}.`, `"%d."`). Where the two disagree the header is
/// refused: two `t` of different values (Node keeps the last, Python the first), a `t`
/// with `_` or trailing text (`int` refuses what `parseInt` cuts), an item `t` or `v1`
/// without `=`, an empty `v1` beside others (Node's compare throws; an empty `v1` is a
/// signature mismatch).
fn stripe_signature<'a>(
    value: &'a str,
    body: &'a [u8],
    kv: KeyValue,
) -> Result<Extracted<'a>, Rejection> {
    let malformed = || reject(Reason::MalformedHeader, kv.header);
    let invalid = || reject(Reason::InvalidTimestamp, kv.header);
    let mut timestamp: Option<(&str, i64)> = None;
    let mut signatures: SmallVec<[&str; 4]> = SmallVec::new();
    let mut empty_signature = false;
    // Whitespace around the whole field value is not part of it (RFC 9110 §5.5): the
    // libraries get the value from a framework that has already dropped it.
    for item in value.trim_matches([' ', '\t']).split(kv.separator) {
        let mut parts = item.split('=');
        let key = parts.next().unwrap_or_default();
        let field = parts.next();
        if key == kv.timestamp_key {
            let text = field
                .ok_or_else(malformed)?
                .trim_matches([' ', '\t', '\r', '\n']);
            if text.is_empty() {
                return Err(malformed());
            }
            let seconds = standard_timestamp(text).ok_or_else(invalid)?;
            if timestamp.is_some_and(|(_, earlier)| earlier != seconds) {
                return Err(malformed());
            }
            timestamp = Some((text, seconds));
        } else if key == kv.signature_key {
            let signature = field.ok_or_else(malformed)?;
            if signature.is_empty() {
                empty_signature = true;
            }
            signatures.push(signature);
        }
    }
    // stripe-node's `secureCompare` throws on an empty candidate, failing the header
    // whatever else it holds: keep only that one, which matches nothing.
    if empty_signature {
        signatures.retain(|s| s.is_empty());
    }
    let (text, seconds) = timestamp.ok_or_else(malformed)?;
    let millis = seconds.checked_mul(1000).ok_or_else(invalid)?;
    signed_timestamp_and_body(
        decimal(text, seconds),
        (millis, kv.header),
        signatures,
        body,
        kv,
    )
}

/// One signature after a fixed prefix (`sha256=…`); a value without the prefix is malformed.
fn prefixed<'a, H: Headers + ?Sized>(
    h: &'a H,
    pre: &Prefetched<'a>,
    header: &'static str,
    prefix: &str,
    encoding: Encoding,
    message: Message<'a>,
) -> Result<Extracted<'a>, Rejection> {
    let value = pre.required(h, header)?;
    let signature = value
        .strip_prefix(prefix)
        .ok_or_else(|| reject(Reason::MalformedHeader, header))?;
    let mut out = Extracted::new(smallvec![message], header);
    push_candidate(&mut out.signatures, &mut 0, encoding, signature, header)?;
    Ok(out)
}

/// PagerDuty: `v1=<hex>[,v1=<hex>…]`, as go-pagerduty's `VerifySignature` reads it: the
/// header first, then an empty body refused (where `non_empty_body`), then the entries —
/// those that do not start with the prefix (another version, or `, v1=` with a space) and
/// values that do not decode are skipped; with no usable entry the header carries no
/// supported signature.
fn prefixed_list<'a, H: Headers + ?Sized>(
    h: &'a H,
    header: &'static str,
    prefix: &str,
    encoding: Encoding,
    body: &'a [u8],
    non_empty_body: bool,
) -> Result<Extracted<'a>, Rejection> {
    let value = required(h, header)?;
    if non_empty_body && body.is_empty() {
        return Err(reject(Reason::MissingHeader, "body"));
    }
    let mut out = Extracted::new(smallvec![smallvec![Cow::Borrowed(body)]], header);
    let mut seen = 0;
    for entry in value.split(',') {
        let Some(signature) = entry.strip_prefix(prefix) else {
            continue;
        };
        // Undecodable values are skipped there; more than MAX_SIGNATURES entries are malformed.
        push_candidate(&mut out.signatures, &mut seen, encoding, signature, header)?;
    }
    if out.signatures.is_empty() {
        return Err(reject(Reason::NoSupportedSignature, header));
    }
    Ok(out)
}

/// DocuSign Connect: one base64 HMAC of the body in each of `{prefix}1` … `{prefix}{max}`, a
/// header per active key; any may match. Headers are looked for by number, gaps allowed (a
/// removed key leaves its number unused).
fn numbered<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    first: &'static str,
    prefix: &str,
    max: usize,
    encoding: Encoding,
) -> Result<Extracted<'a>, Rejection> {
    let mut out = Extracted::new(smallvec![smallvec![Cow::Borrowed(body)]], first);
    let mut name = String::with_capacity(prefix.len().saturating_add(3));
    let mut seen = 0;
    let mut found = false;
    for n in 1..=max {
        name.clear();
        name.push_str(prefix);
        name.push_str(&n.to_string());
        if let Some(value) = single_dynamic(h, &name, first)? {
            found = true;
            push_candidate_up_to(&mut out.signatures, &mut seen, max, encoding, value, first)?;
        }
    }
    if !found {
        return Err(reject(Reason::MissingHeader, first));
    }
    Ok(out)
}

/// One signature, no prefix.
fn bare<'a, H: Headers + ?Sized>(
    h: &'a H,
    pre: &Prefetched<'a>,
    header: &'static str,
    encoding: Encoding,
    message: Message<'a>,
) -> Result<Extracted<'a>, Rejection> {
    let value = pre.required(h, header)?;
    let mut out = Extracted::new(smallvec![message], header);
    push_candidate(&mut out.signatures, &mut 0, encoding, value, header)?;
    Ok(out)
}

/// Slack and Zoom: `v0=<hex>` over `v0:{timestamp}:{body}`. A value without `=` is malformed;
/// another version simply does not match.
fn versioned<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    header: &'static str,
    timestamp_header: &'static str,
    parsed_timestamp: bool,
) -> Result<Extracted<'a>, Rejection> {
    let value = required(h, header)?;
    let ts = required(h, timestamp_header)?;
    let (version, signature) = value
        .split_once('=')
        .ok_or_else(|| reject(Reason::MalformedHeader, header))?;
    let (signed, at) = if parsed_timestamp {
        let invalid = || reject(Reason::InvalidTimestamp, timestamp_header);
        let seconds = standard_timestamp(ts).ok_or_else(invalid)?;
        let millis = seconds.checked_mul(1000).ok_or_else(invalid)?;
        (decimal(ts, seconds), (millis, timestamp_header))
    } else {
        (bytes(ts), timestamp_seconds(ts, timestamp_header)?)
    };
    let message = smallvec![literal("v0:"), signed, literal(":"), Cow::Borrowed(body)];
    let mut out = Extracted::new(smallvec![message], header);
    out.timestamp = Some(at);
    if version == "v0" {
        push_candidate(
            &mut out.signatures,
            &mut 0,
            Encoding::Hex,
            signature,
            header,
        )?;
    }
    Ok(out)
}

/// Zendesk and Webflow: one bare signature over `{timestamp}{separator}{body}`, the header's
/// bytes signed verbatim; the parsed time is only for the window.
fn timestamped<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    header: &'static str,
    timestamp_header: &'static str,
    time: TimeFormat,
    separator: &'static str,
    encoding: Encoding,
) -> Result<Extracted<'a>, Rejection> {
    let value = required(h, header)?;
    let ts = required(h, timestamp_header)?;
    let message = smallvec![bytes(ts), literal(separator), Cow::Borrowed(body)];
    let mut out = Extracted::new(smallvec![message], header);
    let ms = match time {
        TimeFormat::UnixMillis => parse_digits(ts),
        TimeFormat::Rfc3339 => rfc3339_millis(ts),
    }
    .ok_or_else(|| reject(Reason::InvalidTimestamp, timestamp_header))?;
    out.timestamp = Some((ms, timestamp_header));
    push_candidate(&mut out.signatures, &mut 0, encoding, value, header)?;
    Ok(out)
}

fn twitch<'a, H: Headers + ?Sized>(h: &'a H, body: &'a [u8]) -> Result<Extracted<'a>, Rejection> {
    const SIGNATURE: &str = "Twitch-Eventsub-Message-Signature";
    const TIMESTAMP: &str = "Twitch-Eventsub-Message-Timestamp";
    let id = required(h, "Twitch-Eventsub-Message-Id")?;
    let ts = required(h, TIMESTAMP)?;
    let value = required(h, SIGNATURE)?;
    let signature = value
        .strip_prefix("sha256=")
        .ok_or_else(|| reject(Reason::MalformedHeader, SIGNATURE))?;
    // The header bytes are signed verbatim; the parsed time is only for the window.
    let message = smallvec![bytes(id), bytes(ts), Cow::Borrowed(body)];
    let mut out = Extracted::new(smallvec![message], SIGNATURE);
    let ms = rfc3339_millis(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, TIMESTAMP))?;
    out.timestamp = Some((ms, TIMESTAMP));
    push_candidate(
        &mut out.signatures,
        &mut 0,
        Encoding::Hex,
        signature,
        SIGNATURE,
    )?;
    out.delivery_id = Field::Known(Some(id.to_owned()));
    out.dedup = DedupRecipe::SignedDeliveryId;
    Ok(out)
}

/// Shopify, as `@shopify/shopify-api`'s `webhooks.validate` reads a delivery: an events
/// delivery whenever `shopify-hmac-sha256` is present and not empty, else a webhook delivery;
/// the base64 HMAC-SHA256 of the body in that kind's HMAC header. The library refuses an empty
/// body before the HMAC and, after it, a delivery missing any other header of its kind. Those
/// headers are not signed: they are required so that hookgate accepts no more than the
/// library does, not because they prove anything. Here they are checked before the HMAC, so
/// a forged delivery that also lacks them is `missing_header` (the library: invalid HMAC).
fn shopify<'a, H: Headers + ?Sized>(
    h: &'a H,
    pre: &Prefetched<'a>,
    body: &'a [u8],
) -> Result<Extracted<'a>, Rejection> {
    use super::preset::{SHOPIFY_EVENTS, SHOPIFY_WEBHOOKS};
    let kind = if pre.single(h, SHOPIFY_EVENTS.hmac)?.is_some() {
        &SHOPIFY_EVENTS
    } else {
        &SHOPIFY_WEBHOOKS
    };
    if body.is_empty() {
        return Err(reject(Reason::MissingHeader, "body"));
    }
    // The HMAC and the required headers, read in the preset's one walk over the headers.
    let mut out = Extracted::new(smallvec![smallvec![Cow::Borrowed(body)]], kind.hmac);
    for &name in kind.headers {
        let value = pre
            .single(h, name)?
            .ok_or_else(|| reject(Reason::MissingHeader, name))?;
        if name == kind.hmac {
            push_candidate(&mut out.signatures, &mut 0, Encoding::Base64, value, name)?;
        }
    }
    Ok(out)
}

/// Linear: hex over the body; freshness from the body's `webhookTimestamp` (milliseconds).
/// The `Linear-Timestamp` header is not signed, so it is never used for the window. The
/// window is checked after the signature, because the timestamp is only trustworthy once the
/// body is.
fn linear<'a, H: Headers + ?Sized>(h: &'a H, body: &'a [u8]) -> Result<Extracted<'a>, Rejection> {
    const LOCATION: &str = "webhookTimestamp";
    let mut out = bare(
        h,
        &Prefetched::none(),
        "Linear-Signature",
        Encoding::Hex,
        smallvec![Cow::Borrowed(body)],
    )?;
    let text = crate::json::field(body, &[LOCATION])
        .ok_or_else(|| reject(Reason::MissingHeader, LOCATION))?;
    let ms = parse_digits(&text).ok_or_else(|| reject(Reason::InvalidTimestamp, LOCATION))?;
    out.timestamp = Some((ms, LOCATION));
    out.timestamp_after_signature = true;
    Ok(out)
}

/// Discord (Ed25519) and SendGrid (ECDSA): a signature over `{timestamp}{body}`.
fn asymmetric<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    header: &'static str,
    timestamp_header: &'static str,
    encoding: Encoding,
) -> Result<Extracted<'a>, Rejection> {
    let value = required(h, header)?;
    let ts = required(h, timestamp_header)?;
    let mut out = Extracted::new(smallvec![smallvec![bytes(ts), Cow::Borrowed(body)]], header);
    out.timestamp = Some(timestamp_seconds(ts, timestamp_header)?);
    push_candidate(&mut out.signatures, &mut 0, encoding, value, header)?;
    Ok(out)
}

/// Postmark: `Authorization: Basic <base64 user:password>` (RFC 7617; the scheme name is
/// case-insensitive). Another scheme or a value that is not base64 is malformed; the decoded
/// credentials are the token, compared whole in constant time.
fn basic_auth<H: Headers + ?Sized>(h: &H) -> Result<Extracted<'_>, Rejection> {
    const HEADER: &str = "Authorization";
    let malformed = || reject(Reason::MalformedHeader, HEADER);
    let value = required(h, HEADER)?;
    let (scheme, credentials) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(malformed());
    }
    let decoded = BASE64.decode(credentials.trim()).map_err(|_| malformed())?;
    let mut out = Extracted::new(Vec::new(), HEADER);
    out.signatures.push(decoded.into());
    out.mismatch = Reason::TokenMismatch;
    Ok(out)
}

/// Figma: the token is the body's top-level `field`, a non-empty string (or number); without
/// it there is no signature at all. A body that names the field twice is malformed: which
/// one counts would be ambiguous, and the other copy would escape redaction.
fn body_token<'a>(body: &'a [u8], field: &'static str) -> Result<Extracted<'a>, Rejection> {
    let mut members = crate::json::top_level_members(body, field)
        .ok_or_else(|| reject(Reason::MissingSignature, field))?;
    if members.len() > 1 {
        return Err(reject(Reason::MalformedHeader, field));
    }
    let (span, token) = members
        .pop()
        .and_then(|(span, token)| Some((span, token.filter(|t| !t.is_empty())?)))
        .ok_or_else(|| reject(Reason::MissingSignature, field))?;
    let mut out = Extracted::new(Vec::new(), field);
    out.signatures.push(token.into_bytes().into());
    out.mismatch = Reason::TokenMismatch;
    out.redact = vec![span];
    Ok(out)
}

/// The JWS header Netlify signs with (and the signer writes).
pub(crate) const NETLIFY_JWS_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Netlify: a compact JWS `header.claims.signature` (base64url, no padding). Only HS256 is
/// accepted (never `none`); the claims must name `iss: netlify` and carry `sha256`, the hex
/// digest of the body, which the verifier compares once the JWS verifies.
fn netlify<H: Headers + ?Sized>(h: &H) -> Result<Extracted<'_>, Rejection> {
    const HEADER: &str = "X-Webhook-Signature";
    let malformed = || reject(Reason::MalformedHeader, HEADER);
    let value = required(h, HEADER)?;
    let mut parts = value.split('.');
    let (Some(protected), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |part: &str| BASE64_URL.decode(part).map_err(|_| malformed());
    let protected_json = decode(protected)?;
    let alg = crate::json::field(&protected_json, &["alg"]).ok_or_else(malformed)?;
    if alg != "HS256" {
        return Err(reject(Reason::NoSupportedSignature, HEADER));
    }
    let claims_json = decode(claims)?;
    let digest = crate::json::field(&claims_json, &["sha256"]).ok_or_else(malformed)?;
    if crate::json::field(&claims_json, &["iss"]).as_deref() != Some("netlify") {
        return Err(reject(Reason::SignatureMismatch, HEADER));
    }
    // The signing input is the header value up to the second dot, as sent.
    let input_len = protected
        .len()
        .saturating_add(1)
        .saturating_add(claims.len());
    let input = value.get(..input_len).ok_or_else(malformed)?;
    let mut out = Extracted::new(smallvec![smallvec![bytes(input)]], HEADER);
    if let Ok(decoded) = BASE64_URL.decode(signature) {
        out.signatures.push(decoded.into());
    }
    out.body_sha256 = Some((digest, HEADER));
    Ok(out)
}

/// Twilio: HMAC-SHA1 over the URL followed by the sorted form parameters, or, for JSON
/// bodies, over the URL alone carrying `bodySHA256`. The URL is tried in the forms
/// twilio-node's `validateRequest` tries ([`twilio_urls`]).
fn twilio<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    url: &'a str,
    require_body_hash: bool,
) -> Result<Extracted<'a>, Rejection> {
    const HEADER: &str = "X-Twilio-Signature";
    let value = required(h, HEADER)?;
    let body_sha256 = query_param(url, "bodySHA256");
    if require_body_hash && body_sha256.is_none() {
        return Err(reject(Reason::BodyHashMismatch, "bodySHA256"));
    }
    let params: Vec<u8> = if body_sha256.is_some() {
        Vec::new()
    } else {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
            .into_iter()
            .flat_map(|(k, v)| [k.into_bytes(), v.into_bytes()])
            .flatten()
            .collect()
    };
    // The dedup key must not change when a replay re-encodes the form body (`%2B` vs `%2b`,
    // parameter order): for form bodies it is a digest of what is signed, the URL and the
    // sorted, decoded parameters. A JSON body is covered byte for byte by `bodySHA256`.
    let dedup = twilio_dedup(url, &params, body_sha256.is_some());
    let messages: Messages<'a> = twilio_urls(url)
        .into_iter()
        .map(|variant| -> Message<'a> {
            smallvec![Cow::Owned(variant.into_bytes()), Cow::Owned(params.clone())]
        })
        .collect();
    let mut out = Extracted::new(messages, HEADER);
    out.dedup = dedup;
    out.body_sha256 = body_sha256.map(|digest| (digest, "bodySHA256"));
    push_candidate(&mut out.signatures, &mut 0, Encoding::Base64, value, HEADER)?;
    Ok(out)
}

/// HubSpot v3: base64 HMAC-SHA256 of `{method}{URI}{body}{timestamp}`, the timestamp header's
/// bytes signed as sent (Unix milliseconds). HubSpot's docs have the receiver decode the
/// `%`-escapes of [`hubspot_decode_uri`] in the URI first; its official SDKs
/// (hubspot-api-python, hubspot-api-nodejs) sign the URI they are given as it is. Both forms
/// are tried, the second only when it differs.
fn hubspot_v3<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    method: &'a str,
    uri: &'a str,
) -> Result<Extracted<'a>, Rejection> {
    use super::preset::{HUBSPOT_SIGNATURE, HUBSPOT_TIMESTAMP};
    let value = required(h, HUBSPOT_SIGNATURE)?;
    let ts = required(h, HUBSPOT_TIMESTAMP)?;
    let ms = parse_digits(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, HUBSPOT_TIMESTAMP))?;
    let decoded = hubspot_decode_uri(uri);
    let message =
        |uri: Cow<'a, [u8]>| smallvec![bytes(method), uri, Cow::Borrowed(body), bytes(ts)];
    let mut messages = Messages::new();
    if let Cow::Owned(decoded) = decoded {
        messages.push(message(Cow::Owned(decoded.into_bytes())));
    }
    messages.push(message(bytes(uri)));
    let mut out = Extracted::new(messages, HUBSPOT_SIGNATURE);
    out.timestamp = Some((ms, HUBSPOT_TIMESTAMP));
    // A retry re-sends the batch with each event's `attemptNumber` counted up.
    out.dedup = DedupRecipe::BodyWithout("attemptNumber");
    push_candidate(
        &mut out.signatures,
        &mut 0,
        Encoding::Base64,
        value,
        HUBSPOT_SIGNATURE,
    )?;
    Ok(out)
}

/// The URI with the escapes HubSpot's v3 instructions decode (`%3A` `:`, `%2F` `/`, `%3F` `?`,
/// `%40` `@`, `%21` `!`, `%24` `$`, `%27` `'`, `%28` `(`, `%29` `)`, `%2A` `*`, `%2C` `,`,
/// `%3B` `;`; hex digits in either case, as RFC 3986 §2.1 makes them equivalent), every other
/// escape left as it is; borrowed when there is nothing to decode.
pub(crate) fn hubspot_decode_uri(uri: &str) -> Cow<'_, str> {
    const DECODED: [(&[u8; 2], char); 12] = [
        (b"3A", ':'),
        (b"2F", '/'),
        (b"3F", '?'),
        (b"40", '@'),
        (b"21", '!'),
        (b"24", '$'),
        (b"27", '\''),
        (b"28", '('),
        (b"29", ')'),
        (b"2A", '*'),
        (b"2C", ','),
        (b"3B", ';'),
    ];
    let decode = |escape: &[u8]| {
        DECODED
            .iter()
            .find(|(hex, _)| escape.eq_ignore_ascii_case(&hex[..]))
            .map(|(_, c)| *c)
    };
    let bytes = uri.as_bytes();
    let needs = bytes
        .windows(3)
        .any(|w| w.first() == Some(&b'%') && w.get(1..).and_then(decode).is_some());
    if !needs {
        return Cow::Borrowed(uri);
    }
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        match from.as_bytes().get(1..3).and_then(decode) {
            Some(c) => {
                out.push(c);
                rest = from.get(3..).unwrap_or_default();
            }
            None => {
                out.push('%');
                rest = from.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Box: base64 HMAC-SHA256 of `{body}{box-delivery-timestamp}`, the primary key's in
/// `box-signature-primary`, the secondary key's in `box-signature-secondary` (keys and
/// headers paired by position). As box-python-sdk's `validate_message`, the body is tried as
/// received and in the form [`box_escape`] writes (Box's own vectors of non-ASCII, CR and
/// backslash bodies only verify that way). The timestamp may not be ahead of the clock at all.
fn box_signatures<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
) -> Result<Extracted<'a>, Rejection> {
    const PRIMARY: &str = "box-signature-primary";
    const SECONDARY: &str = "box-signature-secondary";
    const TIMESTAMP: &str = "box-delivery-timestamp";
    const VERSION: &str = "box-signature-version";
    const ALGORITHM: &str = "box-signature-algorithm";
    let primary = required(h, PRIMARY)?;
    let secondary = single(h, SECONDARY)?;
    let ts = required(h, TIMESTAMP)?;
    let ms = rfc3339_millis(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, TIMESTAMP))?;
    let version = required(h, VERSION)?;
    let algorithm = required(h, ALGORITHM)?;
    let mut messages: Messages<'a> = smallvec![smallvec![Cow::Borrowed(body), bytes(ts)]];
    if let Some(escaped) = std::str::from_utf8(body).ok().and_then(box_escape) {
        messages.push(smallvec![Cow::Owned(escaped.into_bytes()), bytes(ts)]);
    }
    let mut out = Extracted::new(messages, PRIMARY);
    out.timestamp = Some((ms, TIMESTAMP));
    out.future_tolerance_ms = Some(0);
    out.paired = true;
    if version != "1" || algorithm != "HmacSHA256" {
        // Box's SDK computes nothing for another version or algorithm: no signature counts.
        out.mismatch = Reason::NoSupportedSignature;
        return Ok(out);
    }
    for value in [Some(primary), secondary] {
        // One slot per key, in order; a slot that does not decode never matches.
        let decoded = value.and_then(|v| Encoding::Base64.decode(v.as_bytes()));
        out.signatures.push(decoded.unwrap_or_default().into());
    }
    Ok(out)
}

/// box-python-sdk's `escape_unicode`: every backslash not followed by `/` doubled, then `\n`
/// `\r` `\t` as those escapes and every other character outside printable ASCII as
/// `\uXXXX` (lowercase hex; a UTF-16 surrogate pair above U+FFFF). `None` when that changes
/// nothing.
pub(crate) fn box_escape(body: &str) -> Option<String> {
    let needs = body.chars().any(|c| c == '\\' || !(' '..='~').contains(&c));
    if !needs {
        return None;
    }
    let mut out = String::with_capacity(body.len().saturating_add(16));
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() != Some(&'/') => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            other => {
                let mut units = [0u16; 2];
                for unit in other.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    (out != body).then_some(out)
}

/// Most headers a Contentful request may list as signed; more is malformed.
const MAX_CONTENTFUL_HEADERS: usize = 32;

/// Contentful: lowercase hex HMAC-SHA256 of `{method}\n{path}\n{headers}\n{body}`, as
/// node-apps-toolkit's `verifyRequest` rebuilds it: `path` is the request's path and query
/// normalised by [`contentful_path`]; `headers` are the request headers named in
/// `x-contentful-signed-headers` (names lowercase, values trimmed) that are present, plus
/// `x-contentful-timestamp` (the parsed integer) and `x-contentful-signed-headers` (the sorted
/// names actually used), sorted by name, each `name:value`, joined by `;`.
fn contentful<'a, H: Headers + ?Sized>(
    h: &'a H,
    body: &'a [u8],
    method: &'a str,
    url: &'a str,
) -> Result<Extracted<'a>, Rejection> {
    use super::preset::{CONTENTFUL_SIGNATURE, CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP};
    let value = required(h, CONTENTFUL_SIGNATURE)?;
    let ts = required(h, CONTENTFUL_TIMESTAMP)?;
    let listed = required(h, CONTENTFUL_SIGNED_HEADERS)?;
    let ms =
        parse_digits(ts).ok_or_else(|| reject(Reason::InvalidTimestamp, CONTENTFUL_TIMESTAMP))?;
    let mut picked: Vec<(&str, String)> = Vec::new();
    for (count, name) in listed.split(',').enumerate() {
        if count >= MAX_CONTENTFUL_HEADERS {
            return Err(reject(Reason::MalformedHeader, CONTENTFUL_SIGNED_HEADERS));
        }
        // The toolkit matches the listed names against lowercased header names, as listed
        // (not trimmed): a name with capitals or spaces never matches.
        let usable = !name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase() || b == b' ');
        if !usable || picked.iter().any(|(known, _)| *known == name) {
            continue;
        }
        let value = match name {
            CONTENTFUL_TIMESTAMP => Some(ms.to_string()),
            // Written below, once the names actually used are known.
            CONTENTFUL_SIGNED_HEADERS => Some(String::new()),
            other => single_value(h, other)
                .map_err(|()| reject(Reason::MalformedHeader, CONTENTFUL_SIGNED_HEADERS))?
                .map(str::to_owned),
        };
        if let Some(value) = value {
            picked.push((name, value));
        }
    }
    for always in [CONTENTFUL_TIMESTAMP, CONTENTFUL_SIGNED_HEADERS] {
        if !picked.iter().any(|(name, _)| *name == always) {
            picked.push((always, ms.to_string()));
        }
    }
    picked.sort_by_key(|(name, _)| *name);
    let names = picked
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",");
    let mut canonical = String::with_capacity(names.len().saturating_mul(2).saturating_add(256));
    canonical.push_str(method);
    canonical.push('\n');
    canonical.push_str(&contentful_path(url));
    canonical.push('\n');
    for (index, (name, value)) in picked.iter().enumerate() {
        if index > 0 {
            canonical.push(';');
        }
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(if *name == CONTENTFUL_SIGNED_HEADERS {
            &names
        } else {
            value
        });
    }
    canonical.push('\n');
    let message = smallvec![Cow::Owned(canonical.into_bytes()), Cow::Borrowed(body)];
    let mut out = Extracted::new(smallvec![message], CONTENTFUL_SIGNATURE);
    out.timestamp = Some((ms, CONTENTFUL_TIMESTAMP));
    push_candidate(
        &mut out.signatures,
        &mut 0,
        Encoding::Hex,
        value,
        CONTENTFUL_SIGNATURE,
    )?;
    Ok(out)
}

/// The path Contentful signs: node-apps-toolkit's `getNormalizedEncodedURI` of the request's
/// path and query (`req.url`): split at `?` (text after a second `?` is dropped, as
/// JavaScript's destructured `split` does), the query escaped as `querystring.escape`, then
/// the whole as `encodeURI`.
pub(crate) fn contentful_path(url: &str) -> String {
    // The path and query of an absolute URL; a URL that is already a path stays as it is.
    let path_and_query = match url.split_once("://") {
        Some((_, rest)) => match rest.find(['/', '?']) {
            Some(at) => rest.get(at..).unwrap_or("/"),
            None => "/",
        },
        None => url,
    };
    let path_and_query = path_and_query.split('#').next().unwrap_or_default();
    let mut parts = path_and_query.split('?');
    let pathname = parts.next().unwrap_or_default();
    let search = parts.next().unwrap_or_default();
    // encodeURIComponent's unreserved set (Node's querystring.escape).
    let component = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
    // encodeURI's: those, plus the reserved characters and '#'.
    let uri = |b: u8| component(b) || b";,/?:@&=+$#".contains(&b);
    let mut joined = pathname.to_owned();
    if !search.is_empty() {
        joined.push('?');
        joined.push_str(&percent_encode(search, component));
    }
    percent_encode(&joined, uri)
}

/// `text`'s UTF-8 bytes, each byte `keep` refuses written `%XX` (uppercase hex).
fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For form bodies, the digest of the signed URL and sorted parameters; for JSON bodies the
/// URL and raw body, whose bytes the signed `bodySHA256` pins.
fn twilio_dedup(url: &str, params: &[u8], body_is_hashed: bool) -> DedupRecipe {
    if body_is_hashed {
        return DedupRecipe::UrlAndBody(url.to_owned());
    }
    DedupRecipe::SignedContentDigest(crate::event::url_digest(url, params))
}

/// The value of query parameter `name`, decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The URLs twilio-node's `validateRequest` tries for `url`: the URL as `new URL()` writes it
/// ([`whatwg_url`]), without its port and with it (the scheme's default port when it has
/// none), and each of those with the query re-serialised by Node's legacy `querystring`
/// ([`legacy_query`]) — "signature generation on the back end is inconsistent", says the
/// SDK. An explicit default port is dropped by `new URL()` before the legacy form is made, so
/// that form is never tried with `:443`/`:80`.
fn twilio_urls(url: &str) -> Vec<String> {
    let normalized = whatwg_url(url);
    let ported = url_variants(&normalized);
    let mut all = ported.clone();
    for variant in &ported {
        if has_default_port(variant) {
            continue;
        }
        if let Some(legacy) = legacy_query(variant) {
            all.push(legacy);
        }
    }
    let mut unique: Vec<String> = Vec::with_capacity(all.len());
    for candidate in all {
        if !unique.contains(&candidate) {
            unique.push(candidate);
        }
    }
    unique
}

/// Whether `url` names its scheme's default port explicitly (`https://h:443/`).
fn has_default_port(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    host.ends_with(default)
}

/// The characters `new URL()` percent-encodes in the path and the query of an http(s) URL
/// (WHATWG URL: the path and special-query percent-encode sets; `'` in the query), everything
/// else, existing `%XX` escapes included, as given.
fn whatwg_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let path_start = before_fragment
        .find(['/', '?'])
        .unwrap_or(before_fragment.len());
    let (authority, tail) = before_fragment.split_at(path_start);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let path_keeps = |b: u8| b > 0x20 && b < 0x7f && !b"\"#<>?`{}".contains(&b);
    let query_keeps = |b: u8| b > 0x20 && b < 0x7f && !b"\"#<>'".contains(&b);
    let mut out = format!("{scheme}://{authority}");
    out.push_str(&percent_encode(path, path_keeps));
    if let Some(query) = query {
        out.push('?');
        out.push_str(&percent_encode(query, query_keeps));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Node's `withLegacyQuerystring`: the query parsed by `querystring.parse` (`+` is a space,
/// escapes decoded, repeated names grouped at their first place) and written back by
/// `querystring.stringify` (`querystring.escape`: everything but `A-Z a-z 0-9 - _ . ! ~ * '
/// ( )` escaped). `None` without a query.
fn legacy_query(url: &str) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    if query.is_empty() {
        return None;
    }
    let decode = |text: &str| -> String {
        let spaced = text.replace('+', " ");
        percent_decode_lenient(&spaced)
    };
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for piece in query.split('&').filter(|piece| !piece.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        let (key, value) = (decode(key), decode(value));
        match grouped.iter_mut().find(|(known, _)| *known == key) {
            Some((_, values)) => values.push(value),
            None => grouped.push((key, vec![value])),
        }
    }
    let escape = |text: &str| {
        percent_encode(text, |b| {
            b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
        })
    };
    let written: Vec<String> = grouped
        .iter()
        .flat_map(|(key, values)| {
            values
                .iter()
                .map(move |value| format!("{}={}", escape(key), escape(value)))
        })
        .collect();
    Some(format!("{base}?{}", written.join("&")))
}

/// `%XX` escapes decoded (as UTF-8, invalid sequences replaced); a `%` not followed by two hex
/// digits is kept as it is, as Node's `querystring.unescape` falls back to doing.
fn percent_decode_lenient(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0usize;
    while let Some(&b) = bytes.get(index) {
        let hex = bytes
            .get(index.saturating_add(1)..index.saturating_add(3))
            .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                index = index.saturating_add(3);
            }
            _ => {
                out.push(b);
                index = index.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL as given, without an explicit port, and with the scheme's default port.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (host_port, None),
    };
    let rebuild = |port: Option<&str>| {
        let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{user}{host}{port}{tail}")
    };
    if port.is_some() {
        variants.push(rebuild(None));
    } else {
        let default = if scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        };
        variants.push(rebuild(Some(default)));
    }
    variants
}

/// Mailgun: the signature lives in the body, JSON (`signature.{timestamp,token,signature}`)
/// or form fields; it covers `{timestamp}{token}` only, not the event.
fn mailgun(body: &[u8]) -> Result<Extracted<'_>, Rejection> {
    const LOCATION: &str = "signature";
    let is_json = body.trim_ascii_start().first() == Some(&b'{');
    let field = |name: &str| -> Option<String> {
        if is_json {
            crate::json::field(body, &["signature", name])
        } else {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        }
        .filter(|v| !v.is_empty())
    };
    let (Some(ts), Some(token), Some(signature)) =
        (field("timestamp"), field("token"), field("signature"))
    else {
        return Err(reject(Reason::MissingSignature, LOCATION));
    };
    let timestamp = timestamp_seconds(&ts, "signature.timestamp")?;
    let dedup = DedupRecipe::SignedId(token.clone());
    let message = smallvec![Cow::Owned(ts.into_bytes()), Cow::Owned(token.into_bytes())];
    let mut out = Extracted::new(smallvec![message], LOCATION);
    out.timestamp = Some(timestamp);
    push_candidate(
        &mut out.signatures,
        &mut 0,
        Encoding::Hex,
        &signature,
        LOCATION,
    )?;
    out.dedup = dedup;
    Ok(out)
}

fn generic_hmac<'a, H: Headers + ?Sized>(
    g: &GenericHmac,
    h: &'a H,
    body: &'a [u8],
) -> Result<Extracted<'a>, Rejection> {
    // Header names of a generic scheme are only known at run time; rejections name the role.
    const SIGNATURE: &str = "signature header";
    let values = h.get_all(&g.signature_header);
    let id = match &g.id_header {
        Some(name) => single_dynamic(h, name, "id header")?,
        None => None,
    };
    let ts = match &g.timestamp_header {
        Some(name) => single_dynamic(h, name, "timestamp header")?,
        None => None,
    };
    let mut message: Message<'a> = Message::with_capacity(g.template.len());
    for part in &g.template {
        message.push(match part {
            Part::Literal(text) => Cow::Owned(text.clone()),
            Part::Body => Cow::Borrowed(body),
            Part::Id => bytes(id.ok_or_else(|| reject(Reason::MissingHeader, "id header"))?),
            Part::Timestamp => {
                bytes(ts.ok_or_else(|| reject(Reason::MissingHeader, "timestamp header"))?)
            }
        });
    }
    let mut entries: Vec<&str> = Vec::new();
    for value in &values {
        let value =
            std::str::from_utf8(value).map_err(|_| reject(Reason::MalformedHeader, SIGNATURE))?;
        match g.separator {
            Some(separator) => entries.extend(
                value
                    .split(separator)
                    .map(str::trim)
                    .filter(|e| !e.is_empty()),
            ),
            None => entries.push(value.trim()),
        }
    }
    entries.retain(|e| !e.is_empty());
    if entries.is_empty() {
        return Err(reject(Reason::MissingHeader, SIGNATURE));
    }
    let mut out = Extracted::new(smallvec![message], SIGNATURE);
    let mut seen = 0;
    let mut prefixed = 0usize;
    for entry in entries {
        if let Some(signature) = entry.strip_prefix(g.prefix.as_str()) {
            prefixed = prefixed.saturating_add(1);
            push_candidate(
                &mut out.signatures,
                &mut seen,
                g.encoding,
                signature,
                SIGNATURE,
            )?;
        }
    }
    if prefixed == 0 {
        return Err(reject(Reason::MalformedHeader, SIGNATURE));
    }
    if g.template.contains(&Part::Timestamp) {
        if let Some(ts) = ts {
            out.timestamp = Some(timestamp_seconds(ts, "timestamp header")?);
        }
    }
    out.delivery_id = Field::Known(id.map(str::to_owned));
    out.dedup = match id {
        Some(id) if g.signs_id() => DedupRecipe::SignedId(id.to_owned()),
        _ => DedupRecipe::Body,
    };
    Ok(out)
}

fn single_dynamic<'h, H: Headers + ?Sized>(
    h: &'h H,
    name: &str,
    role: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    single_value(h, name).map_err(|()| reject(Reason::MalformedHeader, role))
}

/// Lowercase hex SHA-256 of `body`, for Twilio's `bodySHA256`.
pub(crate) fn body_sha256_hex(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_in_one_pass_as_str_parse_would() {
        for text in ["0", "7", "1614265330", "9223372036854775807", "000123"] {
            assert_eq!(parse_digits(text), text.parse::<i64>().ok(), "{text}");
        }
        for refused in [
            "",
            "+1",
            "-1",
            "1.5",
            " 1",
            "1 ",
            "9223372036854775808",
            "1a",
            "٣",
        ] {
            assert_eq!(parse_digits(refused), None, "{refused:?}");
        }
    }

    /// The Standard Webhooks timestamp forms every official library accepts, and the ones
    /// only some of them do.
    #[test]
    fn standard_timestamps_are_digits_after_an_optional_plus() {
        assert_eq!(standard_timestamp("1614265330"), Some(1_614_265_330));
        assert_eq!(standard_timestamp("+1614265330"), Some(1_614_265_330));
        assert_eq!(standard_timestamp("01614265330"), Some(1_614_265_330));
        for refused in [
            "",
            "+",
            "++1",
            "-1",
            "1.5",
            "1abc",
            " 1",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(standard_timestamp(refused), None, "{refused:?}");
        }
    }

    /// Persona's rotation groups: whitespace separates them, each group's signature is a
    /// candidate, and the groups must carry one timestamp; Stripe's header keeps its stricter
    /// reading (a second `t` is malformed).
    #[test]
    fn persona_rotation_groups_share_one_timestamp() {
        let kv = KeyValue {
            header: "Persona-Signature",
            whitespace_groups: true,
            ..KeyValue::STRIPE
        };
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let same = [(
            "Persona-Signature",
            format!("t=1700000000,v1={a} t=1700000000,v1={b}"),
        )];
        let out = key_value(&same[..], &Prefetched::none(), b"{}", kv).unwrap();
        assert_eq!(out.signatures.len(), 2);
        assert_eq!(out.timestamp.map(|(ms, _)| ms), Some(1_700_000_000_000));
        let differ = [(
            "Persona-Signature",
            format!("t=1700000000,v1={a} t=1700000001,v1={b}"),
        )];
        let rejected = key_value(&differ[..], &Prefetched::none(), b"{}", kv)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(rejected.reason(), Reason::MalformedHeader);
        let stripe = [(
            "Stripe-Signature",
            format!("t=1700000000,v1={a},t=1700000000"),
        )];
        let rejected = key_value(&stripe[..], &Prefetched::none(), b"{}", KeyValue::STRIPE)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(rejected.reason(), Reason::MalformedHeader);
    }

    /// DocuSign: a removed key leaves a gap in the numbering; later headers still count, and
    /// none at all is a missing header named after the first.
    #[test]
    fn numbered_headers_allow_gaps() {
        let headers = [("X-DocuSign-Signature-3", "AAAA")];
        let out = numbered(
            &headers[..],
            b"{}",
            "X-DocuSign-Signature-1",
            "X-DocuSign-Signature-",
            100,
            Encoding::Base64,
        )
        .unwrap();
        assert_eq!(
            out.signatures.as_slice(),
            [Candidate::from_slice(&[0, 0, 0])]
        );
        let none: [(&str, &str); 0] = [];
        let missing = numbered(
            &none[..],
            b"{}",
            "X-DocuSign-Signature-1",
            "X-DocuSign-Signature-",
            100,
            Encoding::Base64,
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(missing.reason(), Reason::MissingHeader);
    }

    /// go-pagerduty's order: the header, then the body (`ErrMalformedBody`), then the entries.
    #[test]
    fn an_empty_body_is_refused_after_the_header_and_before_the_entries() {
        let list = |headers: &[(&str, &str)], body: &'static [u8], non_empty_body: bool| {
            prefixed_list(
                headers,
                "X-PagerDuty-Signature",
                "v1=",
                Encoding::HexAnyCase,
                body,
                non_empty_body,
            )
            .map(|out| out.signatures.len())
            .map_err(|r| (r.reason(), r.location()))
        };
        let entry = [("X-PagerDuty-Signature", "v1=00ff")];
        assert_eq!(list(&entry, b"{}", true), Ok(1));
        assert_eq!(
            list(&entry, b"", true),
            Err((Reason::MissingHeader, "body"))
        );
        assert_eq!(list(&entry, b"", false), Ok(1));
        assert_eq!(
            list(&[], b"", true),
            Err((Reason::MissingHeader, "X-PagerDuty-Signature"))
        );
        assert_eq!(
            list(&[("X-PagerDuty-Signature", "v2=00ff")], b"", true),
            Err((Reason::MissingHeader, "body"))
        );
    }

    #[test]
    fn url_variants_cover_port_quirks() {
        assert_eq!(
            url_variants("https://example.com/path?a=1"),
            vec![
                "https://example.com/path?a=1",
                "https://example.com:443/path?a=1"
            ]
        );
        assert_eq!(
            url_variants("http://user:pw@example.com:1234/x"),
            vec![
                "http://user:pw@example.com:1234/x",
                "http://user:pw@example.com/x"
            ]
        );
        assert_eq!(
            url_variants("http://[::1]/x"),
            vec!["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(url_variants("no-scheme"), vec!["no-scheme"]);
    }

    #[test]
    fn strict_timestamps() {
        assert_eq!(parse_unix_seconds("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_unix_seconds("1700000000.0"), None);
        assert_eq!(parse_unix_seconds("-5"), None);
        assert_eq!(parse_unix_seconds("+5"), None);
        assert_eq!(parse_unix_seconds(""), None);
        assert_eq!(parse_unix_seconds("99999999999999999999"), None);
        assert_eq!(parse_unix_seconds("9223372036854775807"), None);
        assert_eq!(
            rfc3339_millis("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(rfc3339_millis("yesterday"), None);
    }

    #[test]
    fn twilio_dedup_follows_the_signed_parameters_not_the_raw_encoding() {
        let url = "https://example.com/sms";
        let key = |body: &[u8]| {
            let headers = [("X-Twilio-Signature", "AAAA")];
            let out = twilio(&headers, body, url, false).unwrap();
            match out.dedup {
                DedupRecipe::SignedContentDigest(digest) => digest,
                other => panic!("unexpected {other:?}"),
            }
        };
        let original = key(b"From=%2B1555&Body=hi");
        assert_eq!(key(b"Body=hi&From=%2b1555&"), original);
        assert_ne!(key(b"From=%2B1556&Body=hi"), original);
    }

    /// What the preset reads of a Standard Webhooks delivery's headers, in one walk.
    fn webhook_headers(h: &[(String, String)]) -> Prefetched<'_> {
        Prefetched::read(h, Family::WEBHOOK.names.iter().copied())
    }

    /// A signature header repeated on several lines counts every line's entries toward the
    /// limit, as one line with all of them would.
    #[test]
    fn repeated_signature_lines_count_toward_the_limit() {
        let half = vec!["v1,AAAA"; MAX_SIGNATURES / 2 + 1].join(" ");
        let mut h = vec![
            ("webhook-id".to_owned(), "msg".to_owned()),
            ("webhook-timestamp".to_owned(), "1".to_owned()),
            ("webhook-signature".to_owned(), half.clone()),
        ];
        let read = |h: &[(String, String)]| {
            standard(
                h,
                &webhook_headers(h),
                b"{}",
                Family::WEBHOOK,
                "v1",
                Encoding::Base64,
                Reason::SignatureMismatch,
            )
            .map(|out| out.signatures.len())
        };
        assert_eq!(read(&h).unwrap(), MAX_SIGNATURES / 2 + 1);
        h.push(("Webhook-Signature".to_owned(), half));
        assert_eq!(read(&h).unwrap_err().reason(), Reason::MalformedHeader);
        // A blank second line adds nothing; the one line is read as sent.
        h.pop();
        h.push(("webhook-signature".to_owned(), " ".to_owned()));
        assert_eq!(read(&h).unwrap(), MAX_SIGNATURES / 2 + 1);
    }

    #[test]
    fn v1a_headers_carry_at_most_a_few_signatures() {
        let entry = format!("v1a,{}", "A".repeat(86) + "==");
        let headers = |n: usize| {
            vec![
                ("webhook-id".to_owned(), "msg".to_owned()),
                ("webhook-timestamp".to_owned(), "1".to_owned()),
                (
                    "webhook-signature".to_owned(),
                    vec![entry.as_str(); n].join(" "),
                ),
            ]
        };
        let four = headers(MAX_ASYMMETRIC_SIGNATURES);
        assert!(
            standard(
                &four,
                &webhook_headers(&four),
                b"{}",
                Family::WEBHOOK,
                "v1a",
                Encoding::Base64,
                Reason::SignatureMismatch
            )
            .is_ok()
        );
        let five = headers(MAX_ASYMMETRIC_SIGNATURES + 1);
        let err = standard(
            &five,
            &webhook_headers(&five),
            b"{}",
            Family::WEBHOOK,
            "v1a",
            Encoding::Base64,
            Reason::SignatureMismatch,
        )
        .unwrap_err();
        assert_eq!(err.reason(), Reason::MalformedHeader);
        // HMAC entries keep the larger limit.
        let many_v1 = vec![
            (
                "webhook-signature".to_owned(),
                vec!["v1,AAAA"; MAX_SIGNATURES].join(" "),
            ),
            four[0].clone(),
            four[1].clone(),
        ];
        assert!(
            standard(
                &many_v1,
                &webhook_headers(&many_v1),
                b"{}",
                Family::WEBHOOK,
                "v1",
                Encoding::Base64,
                Reason::SignatureMismatch
            )
            .is_ok()
        );
    }

    #[test]
    fn single_rejects_conflicting_repeats() {
        let h = [("x", "a"), ("X", "a")];
        assert_eq!(single(&h, "x").unwrap(), Some("a"));
        let h = [("x", "a"), ("X", "b")];
        assert_eq!(
            single(&h, "x").unwrap_err().reason(),
            Reason::MalformedHeader
        );
        let h = [("x", "  ")];
        assert_eq!(single(&h, "x").unwrap(), None);
    }

    #[test]
    fn shopify_reads_its_required_headers_in_one_walk_and_names_the_missing_one() {
        use super::super::preset::{SHOPIFY_EVENTS, SHOPIFY_WEBHOOKS};
        assert!(SHOPIFY_WEBHOOKS.headers.len() + SHOPIFY_EVENTS.headers.len() <= MAX_PREFETCHED);
        assert_eq!(
            SHOPIFY_WEBHOOKS.headers.first(),
            Some(&SHOPIFY_WEBHOOKS.hmac)
        );
        assert_eq!(SHOPIFY_EVENTS.headers.first(), Some(&SHOPIFY_EVENTS.hmac));
        let full = [
            (
                "X-Shopify-Hmac-Sha256",
                "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
            ),
            ("X-Shopify-Topic", "products/create"),
            ("X-Shopify-Shop-Domain", "shop1.myshopify.io"),
            ("X-Shopify-API-Version", "2023-01"),
            ("X-Shopify-Webhook-Id", "123456789"),
        ];
        // As `preset` calls it: the headers read in one walk (and, for the missing-name
        // fallback, with nothing read beforehand).
        fn shopify<'a>(h: &'a [(&str, &str)], body: &'a [u8]) -> Result<Extracted<'a>, Rejection> {
            let names = SHOPIFY_EVENTS
                .headers
                .iter()
                .chain(SHOPIFY_WEBHOOKS.headers);
            let walked = super::shopify(h, &Prefetched::read(h, names.copied()), body);
            let looked_up = super::shopify(h, &Prefetched::none(), body);
            assert_eq!(walked.is_ok(), looked_up.is_ok());
            walked
        }
        assert!(shopify(&full, b"{}").is_ok());
        assert_eq!(
            shopify(&full, b"").unwrap_err().location(),
            "body",
            "an empty body is refused before anything else"
        );
        for missing in SHOPIFY_WEBHOOKS.headers {
            let h: Vec<_> = full.iter().filter(|(k, _)| k != missing).collect();
            let h: Vec<(&str, &str)> = h.into_iter().copied().collect();
            let rejection = shopify(&h, b"{}").unwrap_err();
            assert_eq!(
                (rejection.reason(), rejection.location()),
                (Reason::MissingHeader, *missing)
            );
        }
        // Two different values of one required header are malformed, as for any header.
        let mut h = full.to_vec();
        h.push(("X-Shopify-Topic", "orders/create"));
        let rejection = shopify(&h, b"{}").unwrap_err();
        assert_eq!(
            (rejection.reason(), rejection.location()),
            (Reason::MalformedHeader, "X-Shopify-Topic")
        );
    }
}

//! What a scheme may sign besides the headers and the body: the URL the sender called and the
//! request's HTTP method.

/// The request line of a delivery, as the sender made it: the full public URL it called
/// (with its query string) and its HTTP method.
///
/// Only some schemes sign them: Twilio and Square sign the URL, HubSpot v3 signs the method
/// and the URL. Adapters and `hookgate serve` fill both in for every request; the handler-only
/// [`verify`](crate::verify) and [`Gate::receive`](crate::Gate::receive) take one too. An
/// `Option<&str>` converts into a context that holds only a URL, so `None` means "nothing
/// beyond headers and body". Without a method, `POST` is assumed: webhooks are posted.
///
/// ```
/// use hookgate::RequestContext;
///
/// let request = RequestContext::new()
///     .with_url("https://hooks.example.com/hubspot?portal=62515")
///     .with_method("POST");
/// assert_eq!(request.url(), Some("https://hooks.example.com/hubspot?portal=62515"));
/// assert_eq!(request.method(), "POST");
///
/// let bare: RequestContext<'_> = None.into();
/// assert_eq!((bare.url(), bare.method()), (None, "POST"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct RequestContext<'a> {
    url: Option<&'a str>,
    method: Option<&'a str>,
    query: Option<&'a str>,
}

impl<'a> RequestContext<'a> {
    /// A context with neither URL nor method.
    pub const fn new() -> Self {
        RequestContext {
            url: None,
            method: None,
            query: None,
        }
    }

    /// The full public URL the sender called, query string included.
    pub const fn with_url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// The URL if there is one (`None` leaves it unset).
    pub const fn with_url_opt(mut self, url: Option<&'a str>) -> Self {
        self.url = url;
        self
    }

    /// The request's HTTP method (`POST`, `GET`, …), as the request line spells it.
    pub const fn with_method(mut self, method: &'a str) -> Self {
        self.method = Some(method);
        self
    }

    /// The raw query string of the request (without `?`), as the request line has it:
    /// adapters pass it for every request, public URL or not, because a provider's
    /// handshake may travel in it (Microsoft Graph's `POST ?validationToken=…`).
    pub const fn with_query(mut self, query: &'a str) -> Self {
        self.query = Some(query);
        self
    }

    /// The query string if there is one (`None` leaves it unset).
    pub const fn with_query_opt(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }

    /// The URL, if known.
    pub const fn url(&self) -> Option<&'a str> {
        self.url
    }

    /// The raw query string: the one given with [`with_query`](Self::with_query), else the
    /// part of the URL between `?` and any `#`; `None` when neither has one.
    ///
    /// ```
    /// use hookgate::RequestContext;
    ///
    /// let from_url = RequestContext::new().with_url("https://h.example/graph?validationToken=a%20b");
    /// assert_eq!(from_url.query(), Some("validationToken=a%20b"));
    /// let given = RequestContext::new().with_query("bt_challenge=20f9f8ed05f77439fe95");
    /// assert_eq!(given.query(), Some("bt_challenge=20f9f8ed05f77439fe95"));
    /// assert_eq!(RequestContext::new().with_url("https://h.example/x").query(), None);
    /// ```
    pub fn query(&self) -> Option<&'a str> {
        self.query.or_else(|| {
            let url = self.url?;
            let before_fragment = url.split_once('#').map_or(url, |(before, _)| before);
            before_fragment.split_once('?').map(|(_, query)| query)
        })
    }

    /// The method, `POST` when none was given.
    pub fn method(&self) -> &'a str {
        self.method.unwrap_or("POST")
    }

    /// This context, with `url` where it has none.
    pub(crate) fn or_url(self, url: Option<&'a str>) -> Self {
        RequestContext {
            url: self.url.or(url),
            method: self.method,
            query: self.query,
        }
    }
}

impl<'a> From<Option<&'a str>> for RequestContext<'a> {
    fn from(url: Option<&'a str>) -> Self {
        RequestContext {
            url,
            method: None,
            query: None,
        }
    }
}

impl<'a> From<&'a str> for RequestContext<'a> {
    fn from(url: &'a str) -> Self {
        RequestContext {
            url: Some(url),
            method: None,
            query: None,
        }
    }
}

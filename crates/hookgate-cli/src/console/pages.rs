//! The console's HTML. Every `(value)` splice is escaped by maud; nothing that came with a
//! request or an event is ever put in with `PreEscaped`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use hookgate_inbox::event_log::{Delivery, HandshakeRecord};
use hookgate_inbox::{ArrivalCursor, Attempt, LogEntry, MinuteActivity, Status, StatusCounts};
use maud::{DOCTYPE, Markup, html};

use super::{Filter, PREFIX, rejections};
use crate::duration::{human, rfc3339};

/// How a chart line reads its value from a minute.
type Series = fn(&MinuteActivity) -> u64;

/// Longest last error shown in a list row.
const ERROR_IN_LIST: usize = 120;
/// Largest body shown on the detail page.
const MAX_BODY_SHOWN: usize = 256 * 1024;

/// What every page's frame needs.
pub(super) struct Context<'a> {
    pub(super) endpoint: &'a str,
    pub(super) endpoints: Vec<&'a str>,
    pub(super) csrf: &'a str,
    pub(super) refresh: Option<u32>,
    pub(super) signed_in: bool,
}

impl Context<'_> {
    fn link(&self, page: &str) -> String {
        format!("{PREFIX}/{page}?endpoint={}", urlencode(self.endpoint))
    }
}

fn frame(title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · hookgate console" }
                link rel="stylesheet" href={ (PREFIX) "/style.css" };
            }
            body { (body) }
        }
    }
}

fn page(context: &Context<'_>, current: &str, title: &str, content: Markup) -> Markup {
    let tabs = [
        ("events", "Events"),
        ("dead", "Dead letters"),
        ("activity", "Activity"),
        ("rejections", "Rejections"),
    ];
    frame(
        title,
        context.refresh,
        html! {
            header {
                span.brand { "hookgate" }
                nav {
                    @for (page, label) in tabs {
                        a class=@if page == current { "current" } href=(context.link(page)) { (label) }
                    }
                }
                @if context.endpoints.len() > 1 {
                    form.endpoints method="get" action={ (PREFIX) "/" (current) } {
                        label { "endpoint "
                            select name="endpoint" {
                                @for name in &context.endpoints {
                                    option value=(name) selected[*name == context.endpoint] { (name) }
                                }
                            }
                        }
                        button type="submit" { "show" }
                    }
                } @else {
                    span.endpoint { "endpoint " code { (context.endpoint) } }
                }
                span.live {
                    @match context.refresh {
                        Some(seconds) => { "live: every " (seconds) " s" }
                        None => { "live: off" }
                    }
                }
                @if context.signed_in {
                    form.logout method="post" action={ (PREFIX) "/logout" } {
                        button type="submit" { "sign out" }
                    }
                }
            }
            main {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// The login form (also the body of every 401 page).
pub(super) fn login(next: &str, error: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        html! {
            main.login {
                h1 { "hookgate console" }
                p { "Paste the console token: the one "
                    code { "hookgate serve --console" } " printed, or from "
                    code { "DATA_DIR/console-token" } "." }
                @if let Some(error) = error { p.error { (error) } }
                form method="post" action={ (PREFIX) "/login" } {
                    input type="hidden" name="next" value=(next);
                    label { "Token " input type="password" name="token" autocomplete="current-password" autofocus; }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A page with only a message (errors, unknown pages).
pub(super) fn message(title: &str, text: &str) -> Markup {
    frame(
        title,
        None,
        html! {
            main {
                h1 { (title) }
                p { (text) }
                p { a href={ (PREFIX) "/events" } { "Back to the events" } }
            }
        },
    )
}

fn status_badge(status: Status) -> Markup {
    html! { span class={ "status " (status.as_str()) } { (status.as_str()) } }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

fn time(at: SystemTime) -> Markup {
    let text = rfc3339(at);
    html! { time datetime=(text) { (text.replace('T', " ")) } }
}

/// The event list with its filters and its keyset pager.
pub(super) fn list(
    context: &Context<'_>,
    filter: &Filter,
    entries: &[LogEntry],
    counts: &StatusCounts,
    error: Option<&str>,
) -> Markup {
    let base = filter.query_string(context.endpoint);
    let content = html! {
        p.counts {
            @for status in Status::ALL {
                a href={ (PREFIX) "/events?endpoint=" (urlencode(context.endpoint)) "&status=" (status.as_str()) } {
                    (status_badge(status)) " " (counts.get(status))
                }
                " "
            }
        }
        form.filters method="get" action={ (PREFIX) "/events" } {
            input type="hidden" name="endpoint" value=(context.endpoint);
            label { "status "
                select name="status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status.as_str()) selected[filter.statuses.contains(&status)] { (status.as_str()) }
                    }
                }
            }
            label { "type " input type="text" name="type" value=(filter.event_type) placeholder="invoice.paid"; }
            label { "delivery id " input type="text" name="delivery" value=(filter.delivery_id); }
            label { "destination " input type="text" name="destination" value=(filter.destination); }
            label { "since " input type="text" name="since" value=(filter.since) placeholder="1h, 2025-01-31T10:00:00Z"; }
            label { "until " input type="text" name="until" value=(filter.until); }
            label { input type="checkbox" name="test" value="1" checked[filter.include_test]; " test deliveries" }
            @if let Some(seconds) = context.refresh { input type="hidden" name="refresh" value=(seconds); }
            @else { input type="hidden" name="refresh" value="0"; }
            button type="submit" id="apply-filters" { "Filter" }
            " " a href=(context.link("events")) { "clear" }
        }
        @if let Some(error) = error { p.error { (error) } }
        (events_table(context, entries, false))
        p.pager {
            @if filter.before.is_some() || filter.after.is_some() {
                a href={ (PREFIX) "/events?" (base) } { "« newest" }
                " "
            }
            @if entries.len() == filter.limit {
                @if let Some(last) = entries.last() {
                    @if filter.by_arrival() {
                        a rel="next" href={ (PREFIX) "/events?" (base) "&after=" (ArrivalCursor::after(last).to_text()) } { "older »" }
                    } @else {
                        a rel="next" href={ (PREFIX) "/events?" (base) "&before=" (last.id.get()) } { "older »" }
                    }
                }
            }
        }
    };
    page(context, "events", "Events", content)
}

fn events_table(context: &Context<'_>, entries: &[LogEntry], replay: bool) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { "No events match." }
        } @else {
            table.events {
                thead { tr {
                    th { "id" } th { "status" } th { "type" } th { "scheme" } th { "delivery id" }
                    th { "received" } th { "attempts" } th { "duration" } th { "last error" }
                    @if replay { th { "" } }
                } }
                tbody {
                    @for entry in entries {
                        tr data-id=(entry.id.get()) data-status=(entry.status.as_str()) {
                            td { a href={ (PREFIX) "/events/" (entry.id.get()) "?endpoint=" (urlencode(context.endpoint)) } { (entry.id.get()) } }
                            td { (status_badge(entry.status)) }
                            td.type { (entry.event_type.as_deref().unwrap_or("—")) }
                            td { (entry.scheme) }
                            td.mono { (cut(entry.delivery_id.as_deref().unwrap_or("—"), 40)) }
                            td { (time(entry.received_at)) }
                            td.num { (entry.attempts) }
                            td.num { (entry.processing_duration.map(human).unwrap_or_else(|| "—".to_owned())) }
                            td.error { (cut(entry.last_error.as_deref().unwrap_or(""), ERROR_IN_LIST)) }
                            @if replay {
                                td { (replay_button(context, Some(entry.id.get()), &context.link("dead"), "Replay")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn replay_button(context: &Context<'_>, id: Option<i64>, next: &str, label: &str) -> Markup {
    html! {
        form.replay method="post" action={ (PREFIX) "/replay?endpoint=" (urlencode(context.endpoint)) } {
            input type="hidden" name="csrf" value=(context.csrf);
            input type="hidden" name="next" value=(next);
            @match id {
                Some(id) => { input type="hidden" name="id" value=(id); }
                None => { input type="hidden" name="all" value="1"; }
            }
            button type="submit" class="replay" { (label) }
        }
    }
}

/// The dead letters, each with its replay button, and one to replay them all.
pub(super) fn dead(
    context: &Context<'_>,
    filter: &Filter,
    entries: &[LogEntry],
    total: u64,
    replayed: Option<u64>,
) -> Markup {
    let content = html! {
        @if let Some(n) = replayed {
            p.notice { "Replayed " (n) " dead letter(s): they are back in the queue." }
        }
        p { (total) " dead letter(s): events whose handler failed for good or ran out of attempts. "
            "Replaying puts them back in the queue, attempts counted from zero." }
        @if total > 0 {
            (replay_button(context, None, &context.link("dead"), &format!("Replay all {total}")))
        }
        (events_table(context, entries, true))
        @if entries.len() == filter.limit {
            @if let Some(last) = entries.last() {
                p.pager { a rel="next" href={ (context.link("dead")) "&before=" (last.id.get()) } { "older »" } }
            }
        }
    };
    page(context, "dead", "Dead letters", content)
}

/// One event: its log entry, headers, body and every attempt.
pub(super) fn detail(
    context: &Context<'_>,
    entry: &LogEntry,
    attempts: &[Attempt],
    deliveries: &[Delivery],
    headers: &[(String, String)],
    body: &[u8],
) -> Markup {
    let optional = |at: Option<SystemTime>| at.map(rfc3339).unwrap_or_else(|| "—".to_owned());
    let content = html! {
        dl.fields {
            dt { "status" } dd id="status" { (status_badge(entry.status)) }
            dt { "scheme" } dd { (entry.scheme) }
            dt { "event type" } dd { (entry.event_type.as_deref().unwrap_or("—")) }
            dt { "delivery id" } dd.mono { (entry.delivery_id.as_deref().unwrap_or("—")) }
            dt { "dedup key" } dd.mono { (entry.dedup_key) }
            dt { "signed at" } dd { (optional(entry.signed_at)) }
            dt { "received at" } dd { (rfc3339(entry.received_at)) }
            dt { "attempts" } dd { (entry.attempts) }
            @if let Some(next) = entry.next_attempt_at {
                @if matches!(entry.status, Status::Failed | Status::Queued | Status::Received) {
                    dt { "next attempt" } dd { (rfc3339(next)) }
                }
            }
            @if let Some(duration) = entry.processing_duration {
                dt { "last duration" } dd { (human(duration)) }
            }
            @if let Some(error) = &entry.last_error {
                dt { "last error" } dd.error { (error) }
            }
            @if let Some(dead) = entry.dead_at {
                dt { "dead since" } dd { (rfc3339(dead)) }
            }
            @if entry.is_test { dt { "test delivery" } dd { "yes" } }
        }
        @if entry.status == Status::Dead {
            (replay_button(context, Some(entry.id.get()), &format!("{PREFIX}/events/{}?endpoint={}", entry.id.get(), urlencode(context.endpoint)), "Replay this event"))
        }
        @if !deliveries.is_empty() {
            h2 { "Deliveries" }
            table.deliveries {
                thead { tr { th { "destination" } th { "state" } th { "attempts" } th { "lane" } th { "last error" } } }
                tbody {
                    @for delivery in deliveries {
                        tr {
                            td {
                                a href={ (PREFIX) "/events?endpoint=" (urlencode(context.endpoint)) "&destination=" (urlencode(&delivery.destination)) } { (delivery.destination) }
                            }
                            td { (status_badge(delivery.status)) }
                            td.num { (delivery.attempts) }
                            td.mono { (delivery.lane.as_deref().map(|l| cut(l, 100)).unwrap_or_default()) }
                            td.error { (delivery.last_error.as_deref().map(|e| cut(e, 300)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        h2 { "Attempts" }
        @if attempts.is_empty() {
            p.empty { "Not attempted yet." }
        } @else {
            table.attempts {
                thead { tr { th { "#" } th { "outcome" } th { "started" } th { "took" } th { "error" } } }
                tbody {
                    @for attempt in attempts {
                        tr {
                            td.num { (attempt.attempt) }
                            td { span class={ "outcome " (attempt.outcome) } { (attempt.outcome) } }
                            td { (time(attempt.started_at)) }
                            td.num { (human(attempt.finished_at.duration_since(attempt.started_at).unwrap_or(Duration::ZERO))) }
                            td.error { (attempt.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Headers" }
        @if headers.is_empty() {
            p.empty { "None kept." }
        } @else {
            table.headers {
                tbody {
                    @for (name, value) in headers {
                        tr { th.mono { (name) } td.mono { (value) } }
                    }
                }
            }
        }
        h2 { "Body (" (body.len()) " bytes)" }
        pre id="body" { (shown_body(body)) }
    };
    page(
        context,
        "events",
        &format!("Event {}", entry.id.get()),
        content,
    )
}

/// The body as text: pretty-printed when it is JSON, cut past [`MAX_BODY_SHOWN`].
fn shown_body(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Ok(pretty) = serde_json::to_string_pretty(&value) {
            return cut(&pretty, MAX_BODY_SHOWN);
        }
    }
    let text = String::from_utf8_lossy(body.get(..MAX_BODY_SHOWN).unwrap_or(body));
    let mut text = text.into_owned();
    if body.len() > MAX_BODY_SHOWN {
        text.push_str("\n… (cut)");
    }
    text
}

/// Received, processed and failed per minute: an SVG chart drawn here, no script.
pub(super) fn activity(context: &Context<'_>, hours: u64, minutes: &[MinuteActivity]) -> Markup {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let peak = minutes
        .iter()
        .map(|m| m.received.max(m.processed).max(m.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
    let (peak_f, span) = (peak as f64, minutes.len().saturating_sub(1).max(1) as f64);
    let points = |value: fn(&MinuteActivity) -> u64| -> String {
        let mut out = String::new();
        for (i, minute) in minutes.iter().enumerate() {
            #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
            let (x, v) = (i as f64, value(minute) as f64);
            let x = LEFT + x / span * (WIDTH - LEFT - RIGHT);
            let y = TOP + (1.0 - v / peak_f) * (HEIGHT - TOP - BOTTOM);
            let _ = write!(out, "{x:.1},{y:.1} ");
        }
        out
    };
    let series: [(&str, Series); 3] = [
        ("received", |m| m.received),
        ("processed", |m| m.processed),
        ("failed", |m| m.failed),
    ];
    let totals: Vec<(&str, u64)> = series
        .iter()
        .map(|(name, value)| (*name, minutes.iter().map(value).sum()))
        .collect();
    let label = |at: Option<&MinuteActivity>| {
        at.map(|m| rfc3339(m.minute).get(11..16).unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let content = html! {
        p {
            "Per minute, the last " (hours) " hour(s), UTC. "
            @for h in [1u64, 3, 6, 12, 24] {
                @if h == hours { strong { (h) "h" } } @else {
                    a href={ (context.link("activity")) "&hours=" (h) } { (h) "h" }
                }
                " "
            }
        }
        p.legend {
            @for (name, total) in &totals {
                span class={ "key " (name) } { (name) " " (total) } " "
            }
        }
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label="events per minute" {
            line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH - RIGHT) y2=(HEIGHT - BOTTOM) {}
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) {}
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" { (peak) }
            text x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
            text x=(LEFT) y=(HEIGHT - 8.0) { (label(minutes.first())) }
            text x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" { (label(minutes.last())) }
            @for (name, value) in &series {
                polyline class={ "series " (name) } points=(points(*value)) {}
            }
        }
    };
    page(context, "activity", "Activity", content)
}

/// Rejected requests, deferrals and handshakes, counted per reason by the receiver, and the
/// handshakes recorded in the store (by any replica, also without a receiver here).
pub(super) fn rejections(
    context: &Context<'_>,
    counts: &rejections::Counts,
    handshakes: &[HandshakeRecord],
) -> Markup {
    let content = html! {
        @if !counts.available {
            p.notice { "These counts come from the receiver's metrics: open the console of "
                code { "hookgate serve --console" } " to see them (this console reads only the store)." }
        } @else {
            p { "Since the receiver started. Rejected requests were answered 4xx and stored nothing; "
                "deferred ones were answered 503 and retried by the sender." }
            p.counts {
                "received " strong { (counts.received) } " · accepted " strong { (counts.enqueued) }
                " · duplicates " strong { (counts.duplicates) }
            }
            @for (title, rows) in [("Rejected (4xx)", &counts.rejected), ("Deferred (503)", &counts.failures), ("Handshakes", &counts.handshakes)] {
                h2 { (title) }
                @if rows.is_empty() {
                    p.empty { "None." }
                } @else {
                    table.reasons {
                        thead { tr { th { "reason" } th { "scheme" } th { "count" } } }
                        tbody {
                            @for row in rows {
                                tr { td.mono { (row.reason) } td { (row.scheme) } td.num { (row.count) } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Handshakes recorded in the store" }
        @if handshakes.is_empty() {
            p.empty { "None recorded." }
        } @else {
            p { "The newest " (handshakes.len()) ", by every receiver writing to this store "
                "(the same list as " code { "hookgate inbox handshakes" } ")." }
            table.handshakes {
                thead { tr { th { "received" } th { "scheme" } th { "kind" } th { "key" } } }
                tbody {
                    @for handshake in handshakes {
                        tr {
                            td { (time(handshake.received_at)) }
                            td { (handshake.scheme) }
                            td.mono { (handshake.kind) }
                            td.mono { (handshake.key_id.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
    };
    page(context, "rejections", "Rejections and handshakes", content)
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

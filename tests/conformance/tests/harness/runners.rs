//! One runner per adapter: the core gate called directly, the tower layer behind hyper, the
//! actix-web middleware behind actix-web's server. Both servers listen on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use hookgate::{Gate, VerifiedEvent};
use hookgate_actix::{VerifiedWebhook, WebhookConfig, WebhookGate};
use hookgate_tower::{GateLayer, RawBody};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::{Layer as _, service_fn};

use super::fixture::{Built, build};
use super::{Adapter, Answer, Case, Mode, Req, Run, Script, client};

/// What the handler answers in verify-only mode once it has checked the event and the raw
/// body it was given; the same word the core gate's outcome carries.
const HANDLED: &str = "verified";
/// What the handler answers when the middleware passed on something it should not have.
const HANDLER_SAW_WRONG: &str = "handler_saw_something_wrong";
/// What the handler answers in gate mode, where it must never run.
const HANDLER_RAN: &str = "handler_ran_in_gate_mode";

/// Where requests go.
#[derive(Clone)]
enum Target {
    Core {
        gate: Gate,
        mode: Mode,
        origin: Option<String>,
        handled: Arc<AtomicUsize>,
    },
    Http(SocketAddr),
}

impl Target {
    async fn send(&self, req: &Req) -> Answer {
        match self {
            Target::Http(addr) => client::send(*addr, req).await,
            Target::Core {
                gate,
                mode,
                origin,
                handled,
            } => {
                let url = origin
                    .as_ref()
                    .map(|origin| format!("{origin}{}", req.path));
                let outcome = match mode {
                    _ if req.method == "GET" => {
                        gate.receive_get_with_headers(&req.headers, req.query())
                    }
                    _ if req.method == "OPTIONS" => gate.receive_options(&req.headers, req.query()),
                    Mode::Receive => gate.receive(&req.headers, req.body.clone(), line(&url, req)),
                    Mode::VerifyOnly => {
                        gate.verify_only(&req.headers, req.body.clone(), line(&url, req))
                    }
                }
                .await;
                if outcome.event().is_some() {
                    handled.fetch_add(1, Ordering::SeqCst);
                }
                Answer {
                    status: outcome.status(),
                    code: outcome.body().to_owned(),
                    retry_after: outcome
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    content_type: None,
                    hook_secret: outcome
                        .headers()
                        .get("x-hook-secret")
                        .map(|v| v.to_str().unwrap().to_owned()),
                }
            }
        }
    }
}

/// Runs `case` through `adapter` with a fresh gate.
pub async fn run(adapter: Adapter, case: &Case) -> Run {
    let mut built = build(case).await;
    let (target, server) = match adapter {
        Adapter::Core => (
            Target::Core {
                gate: built.gate.clone(),
                mode: case.mode,
                origin: case.origin.clone(),
                handled: built.handled.clone(),
            },
            Server::None,
        ),
        Adapter::Tower => {
            let (addr, server) = serve_tower(case, &built).await;
            (Target::Http(addr), server)
        }
        Adapter::Actix => {
            let (addr, server) = serve_actix(case, &built);
            (Target::Http(addr), server)
        }
        Adapter::ActixExtractor => {
            let (addr, server) = serve_actix_extractor(case, &built);
            (Target::Http(addr), server)
        }
        Adapter::AxumExtractor => {
            let (addr, server) = serve_axum_extractor(&built).await;
            (Target::Http(addr), server)
        }
    };
    let answers = play(&target, &case.script, &built).await;
    server.stop().await;
    Run {
        answers,
        events: built.events(),
        handshakes: built.handshakes.load(Ordering::SeqCst),
    }
}

async fn play(target: &Target, script: &Script, built: &Built) -> Vec<Answer> {
    match script {
        Script::Sequential(reqs) => {
            let mut answers = Vec::new();
            for req in reqs {
                answers.push(target.send(req).await);
            }
            answers
        }
        Script::Concurrent(reqs) => concurrently(target, reqs).await,
        Script::Held {
            first,
            copies,
            after,
        } => {
            let held = built
                .held
                .clone()
                .expect("a held script needs SinkKind::Held");
            let first_answer = {
                let target = target.clone();
                let first = first.clone();
                tokio::spawn(async move { target.send(&first).await })
            };
            held.entered().await;
            let mut answers = concurrently(target, copies).await;
            held.open();
            answers.insert(0, first_answer.await.unwrap());
            for req in after {
                answers.push(target.send(req).await);
            }
            answers
        }
    }
}

/// Sends all of `reqs` at once; answers in the listed order.
async fn concurrently(target: &Target, reqs: &[Req]) -> Vec<Answer> {
    let mut tasks = JoinSet::new();
    for (index, req) in reqs.iter().enumerate() {
        let target = target.clone();
        let req = req.clone();
        tasks.spawn(async move { (index, target.send(&req).await) });
    }
    let mut answers: Vec<Option<Answer>> = vec![None; reqs.len()];
    while let Some(result) = tasks.join_next().await {
        let (index, answer) = result.unwrap();
        answers[index] = Some(answer);
    }
    answers.into_iter().map(Option::unwrap).collect()
}

/// A running server to stop at the end of a run.
enum Server {
    None,
    /// An accept loop on this runtime (hyper, axum).
    Tower(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

impl Server {
    async fn stop(self) {
        match self {
            Server::None => {}
            Server::Tower(accept_loop) => accept_loop.abort(),
            Server::Actix(handle) => handle.stop(false).await,
        }
    }
}

// --- tower: GateLayer around a service_fn, served by hyper ---

async fn serve_tower(case: &Case, built: &Built) -> (SocketAddr, Server) {
    let mut layer = match case.mode {
        Mode::Receive => GateLayer::new(built.gate.clone()),
        Mode::VerifyOnly => GateLayer::verify_only(built.gate.clone()),
    };
    if let Some(origin) = &case.origin {
        layer = layer.public_origin(origin).unwrap();
    }
    let handled = built.handled.clone();
    let success = built.gate.success_status();
    let mode = case.mode;
    let service = layer.layer(service_fn(move |request: http::Request<RawBody>| {
        let handled = handled.clone();
        async move {
            let (status, text) = match mode {
                Mode::Receive => (500, HANDLER_RAN),
                Mode::VerifyOnly => {
                    let event = request.extensions().get::<VerifiedEvent>().cloned();
                    let body = request.into_body().into_bytes();
                    handle(event.as_ref(), &body, &handled, success)
                }
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from_static(text.as_bytes())))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, Server::Tower(accept_loop))
}

/// The verify-only handler of both HTTP adapters: checks that it got the event and the raw
/// body it was verified over, counts it, and answers.
fn handle(
    event: Option<&VerifiedEvent>,
    body: &[u8],
    handled: &AtomicUsize,
    success: u16,
) -> (u16, &'static str) {
    match event {
        Some(event) if event.body().as_ref() == body => {
            handled.fetch_add(1, Ordering::SeqCst);
            (success, HANDLED)
        }
        _ => (500, HANDLER_SAW_WRONG),
    }
}

// --- actix: WebhookGate around an app, served by actix-web's HttpServer ---

/// What the handlers need (actix and axum alike).
#[derive(Clone)]
struct ActixState {
    handled: Arc<AtomicUsize>,
    success: u16,
}

fn serve_actix(case: &Case, built: &Built) -> (SocketAddr, Server) {
    let mut middleware = match case.mode {
        Mode::Receive => WebhookGate::new(built.gate.clone()),
        Mode::VerifyOnly => WebhookGate::verify_only(built.gate.clone()),
    };
    if let Some(origin) = &case.origin {
        middleware = middleware.public_origin(origin);
    }
    assert!(middleware.config().error().is_none(), "{}", case.name);
    let state = ActixState {
        handled: built.handled.clone(),
        success: built.gate.success_status(),
    };
    let mode = case.mode;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(middleware.clone());
        match mode {
            Mode::Receive => app.default_service(web::to(|| async {
                HttpResponse::InternalServerError().body(HANDLER_RAN)
            })),
            Mode::VerifyOnly => app.default_service(web::to(actix_verified)),
        }
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, Server::Actix(handle))
}

async fn actix_verified(
    VerifiedWebhook(event): VerifiedWebhook,
    body: web::Bytes,
    state: web::Data<ActixState>,
) -> HttpResponse {
    let (status, text) = handle(Some(&event), &body, &state.handled, state.success);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("content-type", "text/plain; charset=utf-8"))
        .body(text)
}

// --- extractors alone, verify-only cases: no middleware, the gate from app data or state ---

fn serve_actix_extractor(case: &Case, built: &Built) -> (SocketAddr, Server) {
    let mut config = WebhookConfig::new(built.gate.clone());
    if let Some(origin) = &case.origin {
        config = config.public_origin(origin);
    }
    assert!(config.error().is_none(), "{}", case.name);
    let state = ActixState {
        handled: built.handled.clone(),
        success: built.gate.success_status(),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(config.clone())
            .app_data(web::Data::new(state.clone()))
            .default_service(web::to(actix_extracted))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, Server::Actix(handle))
}

async fn actix_extracted(
    state: web::Data<ActixState>,
    VerifiedWebhook(event): VerifiedWebhook,
) -> HttpResponse {
    let (status, text) = handle(Some(&event), event.body(), &state.handled, state.success);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("content-type", "text/plain; charset=utf-8"))
        .body(text)
}

async fn serve_axum_extractor(built: &Built) -> (SocketAddr, Server) {
    let state = ActixState {
        handled: built.handled.clone(),
        success: built.gate.success_status(),
    };
    let router = axum::Router::new()
        .fallback(axum_extracted)
        .with_state(built.gate.clone())
        .layer(axum::Extension(state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept_loop = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, Server::Tower(accept_loop))
}

async fn axum_extracted(
    axum::Extension(state): axum::Extension<ActixState>,
    hookgate_tower::VerifiedWebhook(event): hookgate_tower::VerifiedWebhook,
) -> http::Response<Full<Bytes>> {
    let (status, text) = handle(Some(&event), event.body(), &state.handled, state.success);
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .unwrap()
}

/// The request line as the core gate takes it: the public URL (when the case has an origin)
/// the request's method and its query (a handshake may travel in the query of a POST).
fn line<'a>(url: &'a Option<String>, req: &'a Req) -> hookgate::RequestContext<'a> {
    hookgate::RequestContext::new()
        .with_url_opt(url.as_deref())
        .with_method(req.method)
        .with_query_opt(req.query())
}

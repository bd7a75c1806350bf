//! The local HTTP API (JSON), loopback by default, and the operator console on top of it.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/messages` | submit; `201 {"id"}` once durable, `400` bad input, `403` policy, `503` refused |
//! | `GET /v1/messages[?limit=N]` | this node's own messages, newest first, with their states |
//! | `GET /v1/messages/{id}[?wait=30s]` | status; with `wait`, until settled, `no_recipients`, or the time runs out |
//! | `GET /v1/inbox[?after=N or ?from=N][&limit=M][&wait=30s][&topic=P]...` | delivered messages after (or from) a cursor; default: the unread ones |
//! | `POST /v1/inbox/read {"cursor": N}` | marks everything up to `N` read |
//! | `GET /v1/inbox/stream[?after=N][&topic=P]...` | the same as server-sent events, following |
//! | `GET/POST/DELETE /v1/subscriptions` | durable topic subscriptions (`{"pattern": "alerts/#"}`) |
//! | `GET/POST/DELETE /v1/groups` | this node's named groups, joined and left durably (`{"group": "medical"}`) |
//! | `GET /v1/status` | links, routes, queues, counters, refused links, the mesh as known here |
//! | `GET /v1/status/stream[?sent=N]` | server-sent events: `status` on every change and each second, `sent` when the list changes |
//! | `POST /v1/login {"token"}`, `POST /v1/logout`, `GET /v1/session` | console sessions (cookie + CSRF token) |
//! | `POST /v1/cap/alerts` | a CAP 1.2 alert (XML body): `201 {"duplicate", "messages"}` once sent, `200` if it was sent before, `400` naming the element and line, `403` policy, `413` too large |
//! | `GET /v1/cap/feed[?status=actual]` | the CAP alerts received and in force, as Atom, newest first |
//! | `GET /v1/cap/alerts/{id}` | one received alert's CAP document, as sent |
//! | `GET /v1/gateways` | which gateways run, and the MQTT bridge's counters |
//! | `POST /v1/objects?to=A[&precedence=P][&lifetime=T][&name=N][&receipt=false][&status=S]` | an object (the raw body, streamed; its `Content-Type` travels): `201 {"id", "chunks", ...}` once durable, `413` over `max_object`, `503` no room for all of it |
//! | `GET /v1/objects` | objects arriving here or still leaving from here, with their progress |
//! | `GET /v1/objects/{id}` | a delivered object's bytes; `409` while it is still arriving |
//! | `GET /v1/objects/{id}/progress` | chunks received here, or passed on from its origin; its state |
//! | `GET /metrics` | Prometheus text |
//! | `GET /` | the operator console (`/console/*`: its script and style) |
//! | `GET /status` | a plain status page (no script) |
//!
//! Credentials: without `api_token` or `api_users` the API answers loopback host names only,
//! to anyone there. With them, every route but the console's files and the login needs either
//! `Authorization: Bearer <token>` (programs) or a session cookie from `POST /v1/login`
//! (browsers); a request with a session cookie that changes something must carry the
//! session's CSRF token as `X-CSRF-Token`. A request whose `Origin` is not the API's own is
//! refused (403), and no CORS headers are ever sent, so a web page elsewhere can neither read
//! the API nor change anything through an operator's browser.

#![allow(clippy::result_large_err)] // axum responses are the natural error type of handlers

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;

use super::console::{Credentials, SessionInfo, Sessions, same_secret};
use super::driver::{NodeHandle, Snapshot};
use crate::api_model::{
    CancelDoc, CancelRequest, ErrorDoc, GatewaysDoc, GroupRequest, InboxDoc, InboxMessageDoc,
    LinksDoc, LoginRequest, OverdueDoc, PatternRequest, ReadRequest, SentDoc, SessionDoc,
    StatusDoc, SubmitRequest, SubscriptionChangeDoc, SubscriptionsDoc, WithdrawnDoc,
};
use crate::core::{
    Address, Event, InboxItem, MessageId, Precedence, Submission, SubmitError, TopicPattern,
    TrafficStatus,
};
use crate::units::parse_duration;

#[derive(Clone)]
struct Api {
    node: NodeHandle,
    creds: Arc<Credentials>,
    sessions: Sessions,
    cap: Option<Arc<crate::gateway::CapGateway>>,
    mqtt: Option<Arc<crate::gateway::mqtt::MqttStatus>>,
    objects: Arc<super::objects::ObjectLimits>,
}

/// Who may use the API and how browsers log in.
#[derive(Clone, Debug)]
pub struct Access {
    /// The node's own token (`api_token`).
    pub token: Option<String>,
    /// The per-user tokens file (`api_users`).
    pub users: Option<PathBuf>,
    /// How long a console login lasts.
    pub session: Duration,
    /// The largest request body taken: the largest payload, base64-encoded, with room for
    /// the rest of the request.
    pub max_body: usize,
    /// The CAP gateway that takes `POST /v1/cap/alerts` (without one, 404).
    pub cap: Option<Arc<crate::gateway::CapGateway>>,
    /// The MQTT bridge's counters, for `GET /v1/gateways`.
    pub mqtt: Option<Arc<crate::gateway::mqtt::MqttStatus>>,
    /// How objects are taken (`POST /v1/objects`).
    pub objects: super::objects::ObjectLimits,
}

impl Access {
    /// The body limit for payloads of at most `max_payload` bytes.
    pub fn body_limit(max_payload: usize) -> usize {
        max_payload.saturating_mul(4) / 3 + (64 << 10)
    }
}

/// The API's router for a node whose API listens on `port` (`tls`: served over TLS).
pub fn router(node: NodeHandle, access: Access, port: u16, tls: bool) -> Router {
    let max_body = access.max_body;
    let api = Api {
        node,
        creds: Arc::new(Credentials::new(access.token, access.users)),
        sessions: Sessions::new(access.session, port, tls),
        cap: access.cap,
        mqtt: access.mqtt,
        objects: Arc::new(access.objects),
    };
    Router::new()
        .route("/", get(console_page))
        .route("/console/app.js", get(console_js))
        .route("/console/style.css", get(console_css))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/session", get(session))
        .route("/v1/messages", post(submit).get(sent))
        .route("/v1/messages/{id}", get(message))
        .route("/v1/messages/{id}/cancel", post(cancel))
        .route("/v1/overdue", get(overdue))
        .route("/v1/inbox", get(inbox))
        .route("/v1/inbox/read", post(mark_read))
        .route("/v1/inbox/stream", get(stream))
        .route("/v1/subscriptions", get(subscriptions).post(subscribe).delete(unsubscribe))
        .route("/v1/groups", get(groups).post(join_group).delete(leave_group))
        .route("/v1/status", get(status))
        .route("/v1/status/stream", get(status_stream))
        .route("/v1/links", get(links))
        .route("/v1/cap/alerts", post(cap_ingest))
        .route("/v1/cap/alerts/{id}", get(cap_alert))
        .route("/v1/cap/feed", get(cap_feed))
        .route("/v1/gateways", get(gateways))
        .route("/v1/objects", post(object_upload).get(objects))
        .route("/v1/objects/{id}", get(object_download))
        .route("/v1/objects/{id}/progress", get(object_progress))
        .route("/metrics", get(metrics))
        .route("/status", get(page))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(api)
}

/// Serves the API on `listener` until the process ends; over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    access: Access,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    match tls {
        None => axum::serve(listener, router(node, access, port, false)).await,
        Some(cfg) => {
            let listener = super::console::TlsListener::new(listener, cfg);
            axum::serve(listener, router(node, access, port, true)).await
        }
    }
}

/// Routes anyone may reach: the console's files and the login itself.
fn public(path: &str) -> bool {
    path == "/" || path.starts_with("/console/") || path == "/v1/login" || path == "/v1/logout"
}

/// Who a request comes from, as the authorization found it.
#[derive(Clone, Debug)]
enum Caller {
    /// Loopback, no credentials configured.
    Local,
    /// `Authorization: Bearer` (the token): a program, which CSRF does not concern.
    Bearer(String),
    /// A browser session (the cookie's value).
    Session(String, SessionInfo),
}

async fn authorize(
    State(api): State<Api>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Response {
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the `:authority` pseudo-header (the URI's).
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority.as_deref())
        .unwrap_or("");
    // No CORS: a page from another origin may not drive the node through a user's browser.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let scheme = if api.sessions.secure { "https://" } else { "http://" };
        let same = origin.strip_prefix(scheme).is_some_and(|o| o == host);
        if !same {
            return error(StatusCode::FORBIDDEN, "cross-origin requests are refused");
        }
    }
    let path = req.uri().path().to_owned();
    let caller = if !api.creds.required() {
        // Without credentials the API answers loopback names only, so a DNS name rebound to
        // 127.0.0.1 by a web page does not reach it.
        if !is_loopback_host(host) {
            return error(StatusCode::FORBIDDEN, "this API answers loopback host names only");
        }
        Caller::Local
    } else if let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        if api.creds.user_of(given).is_none() {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong API token");
        }
        Caller::Bearer(given.to_owned())
    } else {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| api.sessions.from_cookie_header(v));
        match cookie.and_then(|id| Some((api.sessions.check(&id, &api.creds)?, id))) {
            Some((info, id)) => {
                let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
                let token = headers.get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or(b"");
                if changes && !same_secret(token, info.csrf.as_bytes()) && path != "/v1/logout" {
                    return error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
                }
                Caller::Session(id, info)
            }
            None if public(&path) => return next.run(req).await,
            None => return error(StatusCode::UNAUTHORIZED, "missing or wrong API token"),
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port (or no Host header at all).
fn is_loopback_host(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn login(State(api): State<Api>, JsonBody(body): JsonBody<LoginRequest>) -> Response {
    if !api.creds.required() {
        return error(StatusCode::BAD_REQUEST, "this node's API needs no login (loopback only)");
    }
    let Some(user) = api.creds.user_of(&body.token) else {
        tracing::warn!("a console login with a wrong token was refused");
        return error(StatusCode::UNAUTHORIZED, "wrong token");
    };
    let (id, info) = api.sessions.open(user, &body.token);
    tracing::info!(user = %info.user, "console login");
    let doc = session_doc(&info);
    ([(header::SET_COOKIE, api.sessions.set_cookie(Some(&id)))], Json(doc)).into_response()
}

async fn logout(State(api): State<Api>, caller: Option<Extension<Caller>>) -> Response {
    if let Some(Extension(Caller::Session(id, _))) = caller {
        api.sessions.close(&id);
    }
    ([(header::SET_COOKIE, api.sessions.set_cookie(None))], StatusCode::NO_CONTENT).into_response()
}

fn session_doc(info: &SessionInfo) -> SessionDoc {
    SessionDoc {
        user: info.user.clone(),
        csrf: info.csrf.clone(),
        expires_in_s: Some(info.expires_in.as_secs_f64()),
    }
}

/// Who the browser is logged in as (with the CSRF token to send back), or 401.
async fn session(caller: Option<Extension<Caller>>) -> Response {
    match caller.map(|Extension(c)| c) {
        Some(Caller::Session(_, info)) => Json(session_doc(&info)).into_response(),
        Some(Caller::Local) => {
            Json(SessionDoc { user: "local".into(), csrf: String::new(), expires_in_s: None })
                .into_response()
        }
        Some(Caller::Bearer(_)) | None => error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn console_page() -> Response {
    asset("text/html; charset=utf-8", super::console::INDEX_HTML)
}

async fn console_js() -> Response {
    asset("text/javascript; charset=utf-8", super::console::APP_JS)
}

async fn console_css() -> Response {
    asset("text/css; charset=utf-8", super::console::STYLE_CSS)
}

/// A JSON request body; a body that is not the expected JSON is a `400 {"error"}` naming
/// what is wrong (axum's own rejection is plain text).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, body_error(&e))),
        }
    }
}

/// What is wrong with a request body, in words.
fn body_error(e: &JsonRejection) -> String {
    let text = e.body_text();
    if text.contains("length limit exceeded") {
        return "the request body is larger than this node takes (limits.max_payload, \
                base64 included)"
            .into();
    }
    text
}

fn error(code: StatusCode, reason: impl std::fmt::Display) -> Response {
    (code, Json(ErrorDoc { error: reason.to_string() })).into_response()
}

/// `POST /v1/cap/alerts`: a CAP alert to send (see `crate::gateway`).
async fn cap_ingest(
    State(api): State<Api>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    use crate::api_model::{CapIngestDoc, CapMessageDoc};
    use crate::gateway::IngestError;
    let Some(cap) = &api.cap else {
        return error(StatusCode::NOT_FOUND, "this node runs no CAP gateway");
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = cap.max_bytes();
            let why = format!(
                "the alert is larger than the limit of {limit} bytes (the largest payload)"
            );
            return error(StatusCode::PAYLOAD_TOO_LARGE, why);
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    let doc = |duplicate, sent: &[crate::gateway::Sent]| CapIngestDoc {
        duplicate,
        messages: sent
            .iter()
            .map(|m| CapMessageDoc { to: m.to.clone(), id: m.id.clone().unwrap_or_default() })
            .collect(),
    };
    match cap.ingest(&body).await {
        Ok(i) if i.duplicate => (StatusCode::OK, Json(doc(true, &i.messages))).into_response(),
        Ok(i) => (StatusCode::CREATED, Json(doc(false, &i.messages))).into_response(),
        Err(e @ IngestError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ IngestError::TooLarge { .. }) => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        Err(e @ IngestError::Conflict(_)) => error(StatusCode::CONFLICT, e),
        Err(IngestError::Refused { error, .. }) => submit_error(error),
        Err(e @ IngestError::Unavailable(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /v1/gateways`.
async fn gateways(State(api): State<Api>) -> Response {
    Json(GatewaysDoc { cap: api.cap.is_some(), mqtt: api.mqtt.as_ref().map(|m| m.doc()) })
        .into_response()
}

/// `GET /v1/cap/feed[?status=actual]`.
async fn cap_feed(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let only = match params(&q).iter().find(|(k, _)| k == "status") {
        None => None,
        Some((_, v)) => match v.parse::<TrafficStatus>() {
            Ok(s) => Some(s),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    match crate::gateway::feed::received(&api.node).await {
        Ok(alerts) => {
            let now = crate::gateway::unix_now();
            let node = match api.node.status().await {
                Ok(s) => s.node.node.to_string(),
                Err(_) => return stopped(),
            };
            let body = crate::gateway::feed::atom(&node, &alerts, only, now);
            ([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], body).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /v1/cap/alerts/{id}`: a received alert's document.
async fn cap_alert(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let id = match MessageId::parse_hex(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match crate::gateway::feed::received(&api.node).await {
        Ok(alerts) => match alerts.into_iter().find(|a| a.id == id) {
            Some(a) => {
                ([(header::CONTENT_TYPE, crate::gateway::cap::CONTENT_TYPE)], a.xml).into_response()
            }
            None => error(StatusCode::NOT_FOUND, format!("no CAP alert {id} was received here")),
        },
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

fn stopped() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping")
}

fn parse_submission(b: SubmitRequest) -> Result<Submission, String> {
    let to = Address::parse(&b.to).map_err(|e| e.to_string())?;
    let precedence = match &b.precedence {
        Some(p) => p.parse::<Precedence>().map_err(|e| e.to_string())?,
        None => Precedence::Routine,
    };
    let lifetime = match &b.lifetime {
        Some(l) => parse_duration(l)?,
        None => Duration::from_secs(3600),
    };
    let (payload, default_type) = match (b.body, b.body_b64) {
        (Some(_), Some(_)) => return Err("give body or body_b64, not both".into()),
        (Some(text), None) => (Bytes::from(text), "text/plain; charset=utf-8"),
        (None, Some(b64)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("body_b64: {e}"))?,
            "application/octet-stream",
        ),
        (None, None) => (Bytes::new(), "text/plain; charset=utf-8"),
    };
    let status = match &b.status {
        Some(s) => s.parse::<TrafficStatus>()?,
        None => TrafficStatus::Actual,
    };
    if let Some(k) = &b.key {
        crate::core::types::check_key(k)?;
    }
    let replaces = match &b.replaces {
        Some(id) => Some(MessageId::parse_hex(id).map_err(|e| format!("replaces: {e}"))?),
        None => None,
    };
    Ok(Submission {
        to,
        precedence,
        lifetime,
        content_type: b.content_type.unwrap_or_else(|| default_type.to_owned()),
        payload,
        receipt: b.receipt,
        status,
        key: b.key,
        replaces,
    })
}

async fn submit(
    State(api): State<Api>,
    body: Result<Json<SubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, body_error(&e)),
    };
    let sub = match parse_submission(body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match api.node.submit(sub).await {
        Err(_) => stopped(),
        Ok(Ok(id)) => {
            let doc = crate::api_model::SubmitDoc { id: id.to_string() };
            (StatusCode::CREATED, Json(doc)).into_response()
        }
        Ok(Err(e)) => submit_error(e),
    }
}

/// A refused submission or cancel as an answer: 400 for a wrong request, 403 for what policy
/// forbids, 503 for what the node cannot take now.
fn submit_error(e: SubmitError) -> Response {
    match e {
        SubmitError::Invalid(e) => error(StatusCode::BAD_REQUEST, e),
        SubmitError::Forbidden(e) => error(StatusCode::FORBIDDEN, e),
        e => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `POST /v1/messages/{id}/cancel`: recalls a message (the body is optional).
async fn cancel(State(api): State<Api>, Path(id): Path<String>, body: Bytes) -> Response {
    let target = match MessageId::parse_hex(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")),
        }
    };
    let precedence = match req.precedence.as_deref().map(str::parse::<Precedence>).transpose() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let reason = req.reason.unwrap_or_default();
    match api.node.cancel(target, reason, precedence).await {
        Err(_) => stopped(),
        Ok(Err(e)) => submit_error(e),
        Ok(Ok(r)) => {
            let doc = CancelDoc {
                id: r.id.to_string(),
                target: target.to_string(),
                state: if r.pending { "pending" } else { "sent" }.into(),
                overrode: r.overrode.map(|o| o.to_string()),
            };
            (StatusCode::CREATED, Json(doc)).into_response()
        }
    }
}

/// `POST /v1/objects`: the body, streamed to the spool, goes as one object.
async fn object_upload(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use super::objects::UploadError;
    /// What is read of a refused upload before the answer, at most.
    const DRAIN: u64 = 64 << 20;
    let limits = api.objects.clone();
    let mut body = body.into_data_stream();
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if length.is_some_and(|n: u64| n > limits.max_object) {
        super::objects::drain(&mut body, DRAIN).await;
        let why = UploadError::TooLarge(limits.max_object);
        return error(StatusCode::PAYLOAD_TOO_LARGE, why);
    }
    let ps = params(&q);
    let meta = match object_meta(&ps, &headers) {
        Ok(m) => m,
        Err(e) => {
            super::objects::drain(&mut body, DRAIN).await;
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let spool = match super::objects::spool(&mut body, &limits).await {
        Ok(s) => s,
        Err(e @ UploadError::TooLarge(_)) => {
            super::objects::drain(&mut body, DRAIN).await;
            return error(StatusCode::PAYLOAD_TOO_LARGE, e);
        }
        Err(e @ UploadError::Body(_)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let chunk_size = limits.chunk_size;
    let prepared =
        tokio::task::spawn_blocking(move || super::objects::prepare(&spool, meta, chunk_size))
            .await;
    let sub = match prepared {
        Ok(Ok(sub)) => sub,
        Ok(Err(e)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the spool: {e}"));
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let doc = crate::api_model::ObjectSubmitDoc {
        id: String::new(),
        name: sub.name.clone(),
        size: sub.size,
        encoded_size: sub.chunks.iter().map(|c| c.len() as u64).sum(),
        zstd: sub.zstd,
        chunks: sub.chunks.len() as u32,
        chunk_size: sub.chunk_size,
    };
    match api.node.submit_object(sub).await {
        Err(_) => stopped(),
        Ok(Ok(id)) => {
            let doc = crate::api_model::ObjectSubmitDoc { id: id.to_string(), ..doc };
            (StatusCode::CREATED, Json(doc)).into_response()
        }
        Ok(Err(e)) => submit_error(e),
    }
}

/// An upload's address, precedence, lifetime, name and type from its query and headers.
fn object_meta(
    ps: &[(String, String)],
    headers: &HeaderMap,
) -> Result<super::objects::ObjectMeta, String> {
    const KNOWN: [&str; 6] = ["to", "precedence", "lifetime", "status", "receipt", "name"];
    if let Some((k, _)) = ps.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown parameter {k:?} (known: {})", KNOWN.join(", ")));
    }
    let to = Address::parse(param(ps, "to").ok_or("the query must name `to`")?)
        .map_err(|e| e.to_string())?;
    let precedence = param(ps, "precedence")
        .unwrap_or("routine")
        .parse::<Precedence>()
        .map_err(|e| e.to_string())?;
    let lifetime = parse_duration(param(ps, "lifetime").unwrap_or("1h"))?;
    let status = param(ps, "status").unwrap_or("actual").parse::<TrafficStatus>()?;
    let receipt = match param(ps, "receipt") {
        None | Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(v) => return Err(format!("receipt: {v:?} is not true or false")),
    };
    let name = param(ps, "name").map_or_else(super::objects::default_name, str::to_owned);
    crate::core::objects::check_name(&name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    Ok(super::objects::ObjectMeta { to, precedence, lifetime, receipt, status, name, content_type })
}

fn object_id(id: &str) -> Result<MessageId, Response> {
    MessageId::parse_hex(id).map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

/// `GET /v1/objects/{id}`: a delivered object's bytes.
async fn object_download(State(api): State<Api>, Path(id): Path<String>) -> Response {
    use super::driver::ObjectPart;
    let id = match object_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let manifest = match api.node.object_read(id, None).await {
        Err(_) => return stopped(),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Ok(Ok(ObjectPart::Manifest(Some(m)))) => m,
        Ok(Ok(_)) => {
            return match api.node.object_progress(id).await {
                Ok(Ok(Some(p))) if !p.refused && p.sent.is_none() => error(
                    StatusCode::CONFLICT,
                    format!("object {id} is still arriving: {}", progress_summary(&p)),
                ),
                _ => error(StatusCode::NOT_FOUND, format!("no object {id} was delivered here")),
            };
        }
    };
    let disposition = content_disposition(&manifest.name);
    let headers = [
        (header::CONTENT_TYPE, manifest.content_type.clone()),
        (header::CONTENT_LENGTH, manifest.size.to_string()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    (headers, super::objects::download(api.node.clone(), id, manifest)).into_response()
}

/// `attachment` with the name as ASCII (other characters `_`) and, if it is not ASCII, as
/// UTF-8 too (RFC 6266, `filename*`).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let mut v = format!("attachment; filename=\"{ascii}\"");
    if !name.is_ascii() {
        let encoded: String = name
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        v.push_str(&format!("; filename*=UTF-8''{encoded}"));
    }
    v
}

fn progress_summary(p: &crate::core::objects::ObjectProgress) -> String {
    let total = p.total().map_or_else(|| "?".to_owned(), |t| t.to_string());
    let mut parts = Vec::new();
    if let Some((n, passed)) = p.sent {
        parts.push(format!("chunks {passed}/{n} passed on"));
    }
    if p.received > 0 || p.manifest.is_some() {
        parts.push(format!("chunks {}/{total} received", p.received));
    }
    if p.delivered.is_some() {
        parts.push("delivered here".into());
    }
    if p.refused {
        parts.push("refused: its chunks do not match its manifest".into());
    }
    parts.join(", ")
}

/// `GET /v1/objects/{id}/progress`.
async fn object_progress(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let id = match object_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let p = match api.node.object_progress(id).await {
        Err(_) => return stopped(),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Ok(Ok(None)) => {
            return error(StatusCode::NOT_FOUND, format!("no object {id} is known here"));
        }
        Ok(Ok(Some(p))) => p,
    };
    Json(progress_doc(&api.node, id, &p).await).into_response()
}

/// `GET /v1/objects`: what is on its way.
async fn objects(State(api): State<Api>) -> Response {
    match objects_doc(&api.node).await {
        Ok(doc) => Json(doc).into_response(),
        Err(r) => r,
    }
}

async fn objects_doc(node: &NodeHandle) -> Result<crate::api_model::ObjectsDoc, Response> {
    let list = match node.objects(100).await {
        Err(_) => return Err(stopped()),
        Ok(Err(e)) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Ok(Ok(list)) => list,
    };
    let mut objects = Vec::new();
    for (id, p) in &list {
        objects.push(progress_doc(node, *id, p).await);
    }
    Ok(crate::api_model::ObjectsDoc { objects })
}

async fn progress_doc(
    node: &NodeHandle,
    id: MessageId,
    p: &crate::core::objects::ObjectProgress,
) -> crate::api_model::ObjectProgressDoc {
    let state = match p.sent {
        Some(_) => match node.message(id).await {
            Ok(Ok(Some(v))) => Some(v.state.to_owned()),
            _ => None,
        },
        None => None,
    };
    let mut summary = progress_summary(p);
    if let Some(s) = &state {
        summary = format!("{summary}; {s}");
    }
    crate::api_model::ObjectProgressDoc {
        id: id.to_string(),
        object: p.manifest.as_ref().map(crate::api_model::ObjectDoc::from),
        received: p.received,
        cursor: p.delivered,
        refused: p.refused,
        sent_chunks: p.sent.map(|s| s.0),
        passed_on: p.sent.map(|s| s.1),
        state,
        summary,
    }
}

/// Query parameters as (key, value) pairs, repeats kept.
fn params(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(ps: &'a [(String, String)], key: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn wait_param(ps: &[(String, String)]) -> Result<Duration, Response> {
    match param(ps, "wait") {
        None => Ok(Duration::ZERO),
        Some(w) => parse_duration(w)
            .map(|d| d.min(Duration::from_secs(300)))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e)),
    }
}

async fn message(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let id = match MessageId::parse_hex(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ps = params(&q);
    let wait = match wait_param(&ps) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut events = api.node.events();
    loop {
        let view = match api.node.message(id).await {
            Err(_) => return stopped(),
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            Ok(Ok(None)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no message {id} was sent from this node"),
                );
            }
            Ok(Ok(Some(v))) => v,
        };
        // Nobody to wait for is an answer too: the sender should know now, not at the deadline.
        let nobody = view.state == "no_recipients";
        if view.settled || nobody || tokio::time::Instant::now() >= deadline {
            return Json(crate::api_model::MessageDoc::from(&view)).into_response();
        }
        // Wait for a report about this message (or anything that might have been missed).
        let wake = async {
            loop {
                match events.recv().await {
                    Ok(Event::Reported { of, .. }) if of == id => return,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, wake).await;
    }
}

/// A document as JSON text (an SSE event's data).
fn json_text<T: serde::Serialize>(doc: &T) -> String {
    serde_json::to_string(doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn topic_filter(ps: &[(String, String)]) -> Result<Vec<TopicPattern>, Response> {
    ps.iter()
        .filter(|(k, _)| k == "topic")
        .map(|(_, v)| TopicPattern::new(v).map_err(|e| error(StatusCode::BAD_REQUEST, e)))
        .collect()
}

fn wanted(item: &InboxItem, topics: &[TopicPattern]) -> bool {
    if topics.is_empty() {
        return true;
    }
    match &item.record.envelope.to {
        Address::Topic(t) => topics.iter().any(|p| p.matches(t)),
        _ => false,
    }
}

/// The first cursor wanted: `from=N`, `after=N` (N+1) or `None` for the unread ones.
fn start_cursor(ps: &[(String, String)]) -> Result<Option<u64>, Response> {
    let num = |k: &str| {
        param(ps, k)
            .map(str::parse::<u64>)
            .transpose()
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("{k}: {e}")))
    };
    match (num("from")?, num("after")?) {
        (Some(_), Some(_)) => Err(error(StatusCode::BAD_REQUEST, "give from or after, not both")),
        (Some(f), None) => Ok(Some(f)),
        (None, Some(a)) => Ok(Some(a.saturating_add(1))),
        (None, None) => Ok(None),
    }
}

async fn inbox(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let ps = params(&q);
    let from = match start_cursor(&ps) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let limit = match param(&ps, "limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) if (1..=10_000).contains(&l) => l,
        Some(_) => {
            return error(StatusCode::BAD_REQUEST, "limit: expected a number from 1 to 10000");
        }
    };
    let (wait, topics) = match (wait_param(&ps), topic_filter(&ps)) {
        (Ok(w), Ok(t)) => (w, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = api.node.inbox_watch();
    let mut from = from;
    let mut last: Option<u64> = None;
    loop {
        watch.borrow_and_update();
        let items = match api.node.inbox(from, limit).await {
            Err(_) => return stopped(),
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            Ok(Ok(items)) => items,
        };
        if let Some(i) = items.last() {
            last = Some(i.cursor);
            from = Some(i.cursor + 1);
        }
        let shown: Vec<InboxMessageDoc> =
            items.iter().filter(|i| wanted(i, &topics)).map(InboxMessageDoc::from).collect();
        // A full page may have more behind it; a filtered-out page is progress too.
        if !shown.is_empty() || items.len() == limit || tokio::time::Instant::now() >= deadline {
            return Json(InboxDoc { messages: shown, last }).into_response();
        }
        if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
            return Json(InboxDoc { messages: Vec::new(), last }).into_response();
        }
    }
}

async fn mark_read(State(api): State<Api>, JsonBody(b): JsonBody<ReadRequest>) -> Response {
    match api.node.mark_read(b.cursor) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => stopped(),
    }
}

async fn stream(
    State(api): State<Api>,
    caller: Option<Extension<Caller>>,
    RawQuery(q): RawQuery,
) -> Response {
    let ps = params(&q);
    let from = match start_cursor(&ps) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let topics = match topic_filter(&ps) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let caller = caller.map(|Extension(c)| c);
    let follow = Follow {
        events: api.node.events(),
        api,
        caller,
        from,
        topics,
        pending: Vec::<InboxItem>::new().into_iter(),
        marks: Vec::new(),
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        let ev = f.next().await?;
        Some((Ok::<_, Infallible>(ev), f))
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// One `/v1/inbox/stream`: the inbox from a cursor on, and withdrawals as they happen.
struct Follow {
    api: Api,
    caller: Option<Caller>,
    events: tokio::sync::broadcast::Receiver<Event>,
    from: Option<u64>,
    topics: Vec<TopicPattern>,
    pending: std::vec::IntoIter<InboxItem>,
    /// Withdrawals of entries already sent.
    marks: Vec<SseEvent>,
}

impl Follow {
    async fn next(&mut self) -> Option<SseEvent> {
        let Follow { api, caller, events, from, topics, pending, marks } = self;
        loop {
            if let Some(item) = pending.next() {
                *from = Some(item.cursor + 1);
                if !wanted(&item, topics) {
                    continue;
                }
                return Some(inbox_event(&item));
            }
            if let Some(mark) = marks.pop() {
                return Some(mark);
            }
            // The stream ends with the session or token it was opened with.
            if !still_allowed(api, caller.as_ref()) {
                return None;
            }
            let mut watch = api.node.inbox_watch();
            watch.borrow_and_update();
            let items = match api.node.inbox(*from, 1000).await {
                Ok(Ok(items)) => items,
                _ => return None,
            };
            if items.is_empty() {
                let tick = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! {
                    _ = tick => {}
                    changed = watch.changed() => if changed.is_err() { return None },
                    e = events.recv() => {
                        // Only entries this stream has sent (or skipped) are marked here;
                        // a later entry shows its withdrawal when it is sent.
                        if let Ok(e @ Event::Withdrawn { cursor, .. }) = e
                            && from.is_some_and(|f| cursor < f)
                            && let Some(mark) = withdrawn_event(&e)
                        {
                            marks.push(mark);
                        }
                    }
                }
                continue;
            }
            *pending = items.into_iter();
        }
    }
}

async fn subscriptions(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => Json(SubscriptionsDoc { subscriptions: s.node.subscriptions }).into_response(),
        Err(_) => stopped(),
    }
}

async fn change_subscription(api: Api, body: PatternRequest, subscribe: bool) -> Response {
    let pattern = match TopicPattern::new(&body.pattern) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match api.node.subscribe(pattern, subscribe).await {
        Err(_) => stopped(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Ok(Ok(changed)) => {
            Json(SubscriptionChangeDoc { pattern: body.pattern, changed }).into_response()
        }
    }
}

async fn subscribe(State(api): State<Api>, JsonBody(body): JsonBody<PatternRequest>) -> Response {
    change_subscription(api, body, true).await
}

async fn unsubscribe(State(api): State<Api>, JsonBody(body): JsonBody<PatternRequest>) -> Response {
    change_subscription(api, body, false).await
}

async fn groups(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => Json(crate::api_model::GroupsDoc { groups: s.node.groups }).into_response(),
        Err(_) => stopped(),
    }
}

async fn change_group(api: Api, body: GroupRequest, join: bool) -> Response {
    // A name that `group:<name>` can address: not `all`, not `role:...`.
    match Address::parse(&format!("group:{}", body.group)) {
        Ok(Address::Group(crate::core::types::Group::Named(_))) => {}
        _ => {
            let why = format!("{:?} is not a group name one can join", body.group);
            return error(StatusCode::BAD_REQUEST, why);
        }
    }
    match api.node.group(body.group.clone(), join).await {
        Err(_) => stopped(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Ok(Ok(changed)) => {
            Json(crate::api_model::GroupChangeDoc { group: body.group, changed }).into_response()
        }
    }
}

async fn join_group(State(api): State<Api>, JsonBody(body): JsonBody<GroupRequest>) -> Response {
    change_group(api, body, true).await
}

async fn leave_group(State(api): State<Api>, JsonBody(body): JsonBody<GroupRequest>) -> Response {
    change_group(api, body, false).await
}

async fn status(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => Json(StatusDoc::from(&s)).into_response(),
        Err(_) => stopped(),
    }
}

/// `GET /v1/messages[?limit=N]`: this node's own messages, newest first (default 50).
async fn sent(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let limit = match limit_param(&params(&q), "limit", 50) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match sent_doc(&api.node, limit).await {
        Ok(doc) => Json(doc).into_response(),
        Err(r) => r,
    }
}

/// `GET /v1/overdue[?limit=N]`: destinations past their delivery objective (default 100).
async fn overdue(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let limit = match limit_param(&params(&q), "limit", 100) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match overdue_doc(&api.node, limit).await {
        Ok(doc) => Json(doc).into_response(),
        Err(r) => r,
    }
}

async fn overdue_doc(node: &NodeHandle, limit: usize) -> Result<OverdueDoc, Response> {
    match node.overdue(limit).await {
        Ok(Ok(list)) => Ok(OverdueDoc { overdue: list.iter().map(Into::into).collect() }),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(_) => Err(stopped()),
    }
}

fn limit_param(ps: &[(String, String)], key: &str, default: usize) -> Result<usize, Response> {
    match ps.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(error(StatusCode::BAD_REQUEST, format!("{key} {v:?}: expected 1 to 1000"))),
        },
    }
}

async fn sent_doc(node: &NodeHandle, limit: usize) -> Result<SentDoc, Response> {
    match node.sent(limit).await {
        Ok(Ok(views)) => {
            Ok(SentDoc { messages: views.iter().map(crate::api_model::MessageDoc::from).collect() })
        }
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(_) => Err(stopped()),
    }
}

/// `GET /v1/status/stream[?sent=N][&inbox=M]`: server-sent events for live views, in one
/// connection (a browser allows six per host over HTTP/1.1): `status` (the status document)
/// at once, then whenever the node reports a change and at least every second; `sent` (the
/// newest `N` own messages, default 50) whenever that list changes; `overdue` (the
/// `GET /v1/overdue` document) at once and whenever the counts change; with `inbox=M`,
/// `message` for the last `M` inbox messages and then each new one (as `/v1/inbox/stream`).
/// The stream ends when the session or token it was opened with does.
async fn status_stream(
    State(api): State<Api>,
    caller: Option<Extension<Caller>>,
    RawQuery(q): RawQuery,
) -> Response {
    let ps = params(&q);
    let limit = match limit_param(&ps, "sent", 50) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let inbox = match ps.iter().any(|(k, _)| k == "inbox") {
        true => match limit_param(&ps, "inbox", 200) {
            Ok(l) => Some(l),
            Err(r) => return r,
        },
        false => None,
    };
    let live = Live {
        events: api.node.events(),
        api,
        caller: caller.map(|Extension(c)| c),
        sent_limit: limit,
        inbox,
        inbox_from: None,
        last_sent: None,
        last_moved: 0,
        last_late: None,
        last_objects: None,
        pending: Vec::new(),
        withdrawn: Vec::new(),
        first: true,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let ev = live.next().await?;
        Some((Ok::<_, Infallible>(ev), live))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The state of one live stream (`GET /v1/status/stream`).
struct Live {
    api: Api,
    caller: Option<Caller>,
    events: tokio::sync::broadcast::Receiver<Event>,
    sent_limit: usize,
    /// Follow the inbox: the last this many first.
    inbox: Option<usize>,
    inbox_from: Option<u64>,
    last_sent: Option<String>,
    last_moved: u64,
    last_late: Option<[u64; 4]>,
    /// The traffic counters when the objects list was last read, and the list.
    last_objects: Option<(u64, String)>,
    /// Events to send, last first.
    pending: Vec<SseEvent>,
    /// Inbox entries withdrawn since the last refresh, as events.
    withdrawn: Vec<SseEvent>,
    first: bool,
}

impl Live {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ev) = self.pending.pop() {
                return Some(ev);
            }
            // The sent list is read again only when something may have changed it: an event
            // (a report, a delivery), or a submission or custody taken by a neighbour (the
            // counters below); not on every tick.
            let mut changed = self.first;
            if !self.first {
                // A change wakes the stream at once, but not more than 4 times a second.
                let tick = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! {
                    _ = tick => {}
                    r = self.events.recv() => {
                        if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return None;
                        }
                        changed = true;
                        self.withdrawn.extend(r.ok().as_ref().and_then(withdrawn_event));
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        while let Ok(e) = self.events.try_recv() {
                            self.withdrawn.extend(withdrawn_event(&e));
                        }
                    }
                }
            }
            if !still_allowed(&self.api, self.caller.as_ref()) {
                return None;
            }
            self.refresh(changed).await?;
            self.first = false;
        }
    }

    /// Queues what changed (in the order the browser should see it: status first).
    async fn refresh(&mut self, changed: bool) -> Option<()> {
        let node = self.api.node.clone();
        let status = StatusDoc::from(&node.status().await.ok()?);
        let mut out = vec![SseEvent::default().event("status").data(json_text(&status))];
        let o = &status.overdue;
        let late = [o.flash, o.immediate, o.priority, o.routine];
        if self.last_late != Some(late) {
            let doc = overdue_doc(&node, 100).await.ok()?;
            out.push(SseEvent::default().event("overdue").data(json_text(&doc)));
            self.last_late = Some(late);
        }
        let c = &status.counters;
        // Objects move only when messages do (chunks submitted, taken by a neighbour or
        // received): the list is read again then, not on every tick of every console.
        let traffic = [&c.flash, &c.immediate, &c.priority, &c.routine]
            .iter()
            .map(|c| c.submitted.wrapping_add(c.received).wrapping_add(c.expired))
            .chain(status.links.iter().map(|l| l.accepted))
            .fold(0u64, u64::wrapping_add);
        if changed || self.last_objects.as_ref().is_none_or(|(t, _)| *t != traffic) {
            let objects = json_text(&objects_doc(&node).await.ok()?);
            if self.last_objects.as_ref().is_none_or(|(_, o)| *o != objects) {
                out.push(SseEvent::default().event("objects").data(objects.clone()));
            }
            self.last_objects = Some((traffic, objects));
        }
        let moved = [&c.flash, &c.immediate, &c.priority, &c.routine]
            .iter()
            .map(|c| c.submitted)
            .chain(status.links.iter().map(|l| l.accepted))
            .fold(0u64, u64::wrapping_add);
        if changed || moved != self.last_moved {
            let text = json_text(&sent_doc(&node, self.sent_limit).await.ok()?);
            if self.last_sent.as_ref() != Some(&text) {
                out.push(SseEvent::default().event("sent").data(text.clone()));
                self.last_sent = Some(text);
            }
            self.last_moved = moved;
        }
        if let Some(last) = self.inbox {
            let from =
                *self.inbox_from.get_or_insert(status.inbox.next.saturating_sub(last as u64));
            if status.inbox.next > from {
                let items = node.inbox(Some(from), 1000).await.ok()?.ok()?;
                for item in &items {
                    self.inbox_from = Some(item.cursor + 1);
                    out.push(inbox_event(item));
                }
            }
            out.append(&mut self.withdrawn);
        }
        out.reverse();
        self.pending = out;
        Some(())
    }
}

/// An inbox message as a server-sent event (`/v1/inbox/stream`, `/v1/status/stream`).
fn inbox_event(item: &InboxItem) -> SseEvent {
    SseEvent::default()
        .id(item.cursor.to_string())
        .event("message")
        .data(json_text(&InboxMessageDoc::from(item)))
}

/// A `withdrawn` server-sent event for an inbox entry a cancel or a newer message withdrew.
fn withdrawn_event(e: &Event) -> Option<SseEvent> {
    let Event::Withdrawn { cursor, id, by, outcome, reason, .. } = e else { return None };
    let doc = WithdrawnDoc {
        cursor: *cursor,
        id: id.to_string(),
        outcome: outcome.as_str().to_owned(),
        by: by.to_string(),
        reason: reason.clone(),
    };
    Some(SseEvent::default().event("withdrawn").data(json_text(&doc)))
}

/// Whether the session or token a long request was opened with still stands.
fn still_allowed(api: &Api, caller: Option<&Caller>) -> bool {
    match caller {
        Some(Caller::Session(id, _)) => api.sessions.check(id, &api.creds).is_some(),
        Some(Caller::Bearer(token)) => api.creds.user_of(token).is_some(),
        Some(Caller::Local) | None => true,
    }
}

/// `GET /v1/links`: the links of `/v1/status`, with what each carried.
async fn links(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => Json(LinksDoc { links: StatusDoc::from(&s).links }).into_response(),
        Err(_) => stopped(),
    }
}

/// Prometheus text exposition of a snapshot.
pub fn metrics_text(s: &Snapshot) -> String {
    use std::fmt::Write;
    let n = &s.node;
    let mut out = String::new();
    let c = &n.counters;
    let _ = writeln!(out, "# TYPE relaymesh_messages_total counter");
    for p in Precedence::DESCENDING {
        let i = p.index();
        for (event, v) in [
            ("submitted", c.submitted[i]),
            ("received", c.received[i]),
            ("forwarded", c.forwarded[i]),
            ("delivered", c.delivered[i]),
            ("duplicate", c.duplicates[i]),
            ("expired", c.expired[i]),
            ("refused", c.refused[i]),
            ("no_recipients", c.no_recipients[i]),
            ("cancelled", c.cancelled[i]),
            ("superseded", c.superseded[i]),
            ("escalated", c.escalated[i]),
        ] {
            let _ = writeln!(
                out,
                "relaymesh_messages_total{{precedence=\"{p}\",event=\"{event}\"}} {v}"
            );
        }
    }
    let _ = writeln!(out, "# TYPE relaymesh_members gauge\nrelaymesh_members {}", n.members.len());
    let _ = writeln!(out, "# TYPE relaymesh_held_messages gauge");
    for p in Precedence::DESCENDING {
        let _ =
            writeln!(out, "relaymesh_held_messages{{precedence=\"{p}\"}} {}", n.held[p.index()]);
    }
    let _ = writeln!(out, "# TYPE relaymesh_overdue gauge");
    for p in Precedence::DESCENDING {
        let _ = writeln!(out, "relaymesh_overdue{{precedence=\"{p}\"}} {}", n.overdue[p.index()]);
    }
    let _ =
        writeln!(out, "# TYPE relaymesh_held_bytes gauge\nrelaymesh_held_bytes {}", n.held_bytes);
    let _ = writeln!(
        out,
        "# TYPE relaymesh_store_capacity_bytes gauge\nrelaymesh_store_capacity_bytes {}",
        n.capacity
    );
    let _ = writeln!(
        out,
        "# TYPE relaymesh_store_failures_total counter\nrelaymesh_store_failures_total {}",
        c.store_failures
    );
    let _ = writeln!(
        out,
        "# TYPE relaymesh_store_commits_total counter\nrelaymesh_store_commits_total {}",
        n.store.commits
    );
    let _ = writeln!(
        out,
        "# TYPE relaymesh_store_rows_written_total counter\nrelaymesh_store_rows_written_total {}",
        n.store.rows_written
    );
    let _ = writeln!(
        out,
        "# TYPE relaymesh_store_rows_cancelled_total counter\nrelaymesh_store_rows_cancelled_total {}",
        n.store.rows_cancelled
    );
    let _ = writeln!(out, "# TYPE relaymesh_link_up gauge");
    for l in &n.links {
        let labels = format!("peer=\"{}\",medium=\"{}\",link=\"{}\"", l.peer, l.medium, l.id.0);
        let _ = writeln!(out, "relaymesh_link_up{{{labels}}} {}", u8::from(l.up));
        if let Some(rtt) = l.rtt {
            let _ = writeln!(out, "relaymesh_link_rtt_seconds{{{labels}}} {}", rtt.as_secs_f64());
        }
        let _ = writeln!(out, "relaymesh_link_loss_ratio{{{labels}}} {}", l.loss);
        let _ = writeln!(out, "relaymesh_link_offers_total{{{labels}}} {}", l.counters.offered);
        let _ = writeln!(out, "relaymesh_link_accepted_total{{{labels}}} {}", l.counters.accepted);
        let _ = writeln!(
            out,
            "relaymesh_link_bytes_offered_total{{{labels}}} {}",
            l.counters.bytes_offered
        );
    }
    let _ = writeln!(out, "# TYPE relaymesh_link_wire_bytes_total counter");
    for ((peer, medium), w) in &s.wire {
        for (direction, d) in [("sent", &w.sent), ("received", &w.received)] {
            for (kind, v) in [
                ("payload", d.payload),
                ("offers", d.offer_bytes),
                ("control", d.control_bytes),
                ("probes", d.datagram_bytes),
                ("udp", d.udp_bytes),
            ] {
                let _ = writeln!(
                    out,
                    "relaymesh_link_wire_bytes_total{{peer=\"{peer}\",medium=\"{medium}\",\
                     direction=\"{direction}\",kind=\"{kind}\"}} {v}"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# TYPE relaymesh_refused_links gauge\nrelaymesh_refused_links {}",
        s.refusals.len()
    );
    let _ = writeln!(
        out,
        "# TYPE relaymesh_inbox_unread gauge\nrelaymesh_inbox_unread {}",
        n.inbox_next.saturating_sub(n.inbox_read)
    );
    // Seconds left on certificates (negative once expired): alert below 30 days.
    let left = |t: std::time::SystemTime| match t.duration_since(s.wall) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let _ = writeln!(
        out,
        "# TYPE relaymesh_credentials_reload_failed gauge\nrelaymesh_credentials_reload_failed {}",
        u8::from(s.credentials_error.is_some())
    );
    if let Some(t) = s.certificate_expires {
        let _ = writeln!(
            out,
            "# TYPE relaymesh_certificate_expiry_seconds gauge
\
             relaymesh_certificate_expiry_seconds {:.0}",
            left(t)
        );
    }
    let _ = writeln!(out, "# TYPE relaymesh_peer_certificate_expiry_seconds gauge");
    for l in &n.links {
        if let Some(t) = s.peer_certificates.get(&l.id) {
            let _ = writeln!(
                out,
                "relaymesh_peer_certificate_expiry_seconds{{peer=\"{}\",medium=\"{}\"}} {:.0}",
                l.peer,
                l.medium,
                left(*t)
            );
        }
    }
    out
}

async fn metrics(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(s) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics_text(&s))
            .into_response(),
        Err(_) => stopped(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn page(State(api): State<Api>) -> Response {
    let s = match api.node.status().await {
        Ok(s) => s,
        Err(_) => return stopped(),
    };
    let n = &s.node;
    let mut rows = String::new();
    for l in &n.links {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}%</td><td>{}</td></tr>",
            escape(l.peer.as_str()),
            l.medium,
            if l.up { "up" } else { "down" },
            l.role,
            l.rtt.map_or(0.0, |r| r.as_micros() as f64 / 1000.0),
            l.loss * 100.0,
            l.inflight
        ));
    }
    let mut refused = String::new();
    for r in &s.refusals {
        refused.push_str(&format!("<li>{} ({}): {}</li>", r.addr, r.medium, escape(&r.reason)));
    }
    let queues: Vec<String> =
        Precedence::DESCENDING.iter().map(|p| format!("{p}: {}", n.held[p.index()])).collect();
    let late: Vec<String> = Precedence::DESCENDING
        .iter()
        .filter(|p| n.overdue[p.index()] > 0)
        .map(|p| format!("{} {}", n.overdue[p.index()], p.as_str().to_uppercase()))
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>relaymesh {node}</title>\
         <meta http-equiv=refresh content=5><style>body{{font-family:sans-serif;margin:2em}}\
         td,th{{padding:.2em .8em;text-align:left}}</style></head><body>\
         <h1>{node} <small>({role})</small></h1>\
         <p>Held: {queues} ({bytes} bytes). Unread inbox: {unread}.</p>{late}\
         <h2>Links</h2><table><tr><th>peer</th><th>medium</th><th>state</th><th>role</th><th>rtt ms</th><th>loss</th><th>in flight</th></tr>{rows}</table>\
         <h2>Refused links</h2><ul>{refused}</ul></body></html>",
        node = escape(n.node.as_str()),
        role = n.role,
        queues = queues.join(", "),
        bytes = n.held_bytes,
        unread = n.inbox_next.saturating_sub(n.inbox_read),
        late = if late.is_empty() {
            String::new()
        } else {
            format!("<p><strong>OVERDUE: {}</strong> (GET /v1/overdue)</p>", late.join(", "))
        },
    ))
    .into_response()
}

/// Binds the API address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn a_download_names_its_file_in_ascii_and_in_utf8_when_it_must() {
        assert_eq!(content_disposition("drone 42.jpg"), "attachment; filename=\"drone 42.jpg\"");
        assert_eq!(
            content_disposition("café\"x.jpg"),
            "attachment; filename=\"caf__x.jpg\"; filename*=UTF-8''caf%C3%A9%22x.jpg"
        );
    }
}

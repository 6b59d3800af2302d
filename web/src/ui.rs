//! The web page: HTML, script and style compiled into the binary (no CDN; works offline).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The page.
const INDEX: &str = include_str!("../ui/index.html");
/// Its script: fetches the JSON API every second and draws the tables and the DAG (SVG).
const APP_JS: &str = include_str!("../ui/app.js");
/// Its style.
const STYLE: &str = include_str!("../ui/style.css");

pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

//! Turning running generations into response streams (OpenAI SSE, Ollama NDJSON).
//!
//! [`chunks`] merges the event streams of a request's choices and lets the route turn each
//! event into zero or more output items, plus closing items at the end. When the client goes
//! away, hyper drops the response body, which drops this stream and with it every
//! [`Running`], cancelling the generations.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use perch_engine::engine::Event;

use crate::generation::Running;

/// Merge `runs` (choice `i` is `runs[i]`) and map their events to output items.
pub fn chunks<T, F, G>(
    runs: Vec<Running>,
    head: Vec<T>,
    on_event: F,
    on_end: G,
) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnMut(usize, Event, &mut VecDeque<T>) + Send + 'static,
    G: FnOnce(&mut VecDeque<T>) + Send + 'static,
{
    let per_choice: Vec<BoxStream<'static, (usize, Event)>> = runs
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            stream::unfold(r, move |mut r| async move {
                let ev = r.next().await?;
                Some(((i, ev), r))
            })
            .boxed()
        })
        .collect();
    let merged = stream::select_all(per_choice);
    struct St<T, F, G> {
        merged: stream::SelectAll<BoxStream<'static, (usize, Event)>>,
        queue: VecDeque<T>,
        on_event: F,
        on_end: Option<G>,
    }
    let st = St {
        merged,
        queue: head.into(),
        on_event,
        on_end: Some(on_end),
    };
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            let end = st.on_end.take()?;
            match st.merged.next().await {
                Some((i, ev)) => {
                    (st.on_event)(i, ev, &mut st.queue);
                    st.on_end = Some(end);
                }
                None => end(&mut st.queue),
            }
        }
    })
}

/// A server-sent events response of JSON `data:` lines, with keep-alive comments.
pub fn sse(items: impl Stream<Item = String> + Send + 'static) -> Response {
    let events = items.map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies (nginx) buffer responses unless told not to.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// A newline-delimited JSON response.
pub fn ndjson(items: impl Stream<Item = String> + Send + 'static) -> Response {
    let body = Body::from_stream(items.map(|mut line| {
        line.push('\n');
        Ok::<_, Infallible>(Bytes::from(line))
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

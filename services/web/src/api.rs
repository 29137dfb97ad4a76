//! The shop's public API, as the pages call it: through the gateway, with the signed-in
//! user's bearer token, exactly as any other client. What it answers is read with the web
//! service's own (tolerant) types in [`crate::model`]; no service crate is linked.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Every page's API calls come from this service, yet rate limits must apply per browser,
/// not to the whole shop at once: the gateway takes the browser's address from this header
/// when the call also carries the gateway credential.
use platform::auth::CLIENT_IP_HEADER;

/// Largest API answer the pages read (a page of 100 products is ~60 KiB).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A client of the gateway's public API. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    credential: Option<HeaderValue>,
}

/// Who makes a call: the browser's address and, when signed in, the access token.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<HeaderValue>,
}

/// One call's extra headers and body.
#[derive(Debug, Default)]
pub struct Call {
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<(HeaderValue, Bytes)>,
}

impl Call {
    pub fn new() -> Self {
        Self::default()
    }

    /// A JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Result<Self, ApiError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|error| ApiError::Broken(format!("unserializable body: {error}")))?;
        self.body = Some((
            HeaderValue::from_static("application/json"),
            Bytes::from(bytes),
        ));
        Ok(self)
    }

    /// A body of another type (e.g. JSON lines).
    pub fn raw(mut self, content_type: &'static str, body: Bytes) -> Self {
        self.body = Some((HeaderValue::from_static(content_type), body));
        self
    }

    /// A header; a value that cannot be one is an error, not a silently dropped header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self, ApiError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ApiError::Broken(format!("invalid {name} header")))?;
        self.headers.push((name, value));
        Ok(self)
    }
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|error| ApiError::Broken(format!("unexpected answer: {error}")))
    }

    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One invalid field of a refused request.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldViolation {
    pub field: String,
    pub message: String,
}

/// A refusal (4xx) with its problem+json body.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldViolation>,
}

impl Problem {
    /// What to tell a person: the detail when there is one, else the title.
    pub fn message(&self) -> String {
        match &self.detail {
            Some(detail) if !detail.is_empty() => capitalize(detail),
            _ => capitalize(&self.title),
        }
    }
}

pub(crate) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why a call gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API refused the call (4xx).
    #[error("refused: {} {}", .0.status, .0.code)]
    Refused(Problem),
    /// The shop could not answer (connection, timeout, 5xx): try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An answer this page cannot read, or a request it could not make: a bug.
    #[error("{0}")]
    Broken(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused(problem) => Some(problem.status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused(problem) => Some(&problem.code),
            _ => None,
        }
    }
}

impl Api {
    /// `credential` (the deployment's gateway credential) lets the gateway take
    /// [`CLIENT_IP_HEADER`] from this service.
    pub fn new(base: &str, timeout: Duration, credential: Option<&str>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let credential = credential.map(HeaderValue::from_str).transpose()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    /// The request of a call, ready to send.
    fn request(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        call: Call,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &caller.token {
            request = request.bearer_auth(token);
        }
        if let (Some(ip), Some(credential)) = (caller.client_ip, &self.credential) {
            request = request.header(CLIENT_IP_HEADER, ip.to_string()).header(
                platform::auth::GATEWAY_CREDENTIAL_HEADER,
                credential.clone(),
            );
        }
        if let Some(id) = &caller.request_id {
            request = request.header("x-request-id", id.clone());
        }
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        if let Some((content_type, body)) = call.body {
            request = request
                .header(header::CONTENT_TYPE, content_type)
                .body(body);
        }
        request
    }

    /// Sends a call and reads its whole answer: 2xx is an [`Answer`], 4xx a
    /// [`ApiError::Refused`], anything else [`ApiError::Unavailable`].
    pub async fn send(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        call: Call,
    ) -> Result<Answer, ApiError> {
        let response = self
            .request(caller, method, path, call)
            .send()
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response).await?;
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        if status.is_client_error() {
            let problem = serde_json::from_slice::<Problem>(&body).unwrap_or(Problem {
                status: status.as_u16(),
                code: "unknown".to_owned(),
                title: status.canonical_reason().unwrap_or("Refused").to_owned(),
                detail: None,
                errors: Vec::new(),
            });
            return Err(ApiError::Refused(problem));
        }
        Err(ApiError::Unavailable(format!("the API answered {status}")))
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        path: &str,
    ) -> Result<T, ApiError> {
        self.send(caller, Method::GET, path, Call::new())
            .await?
            .json()
    }

    /// A streamed GET (Server-Sent Events): the response as it arrives.
    pub async fn stream(
        &self,
        caller: &Caller,
        path: &str,
        call: Call,
    ) -> Result<reqwest::Response, ApiError> {
        // The stream outlives the per-call timeout: only the connection and the first byte
        // are bounded here, by the gateway's own limits after that.
        let response = self
            .request(caller, Method::GET, path, call)
            .timeout(Duration::from_secs(3_600))
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_capped(response).await.unwrap_or_default();
        if status.is_client_error() {
            if let Ok(problem) = serde_json::from_slice::<Problem>(&body) {
                return Err(ApiError::Refused(problem));
            }
        }
        Err(ApiError::Unavailable(format!("the API answered {status}")))
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ApiError::Broken("the answer is too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// A path segment or query value, percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("Tea-1_x.~"), "Tea-1_x.~");
    }

    #[test]
    fn problems_read_their_fields() {
        let problem: Problem = serde_json::from_str(
            r#"{"type":"t","title":"Unprocessable","status":422,"code":"validation",
                "detail":"the request is invalid","errors":[{"field":"email","message":"is taken"}]}"#,
        )
        .unwrap();
        assert_eq!(problem.errors[0].field, "email");
        assert_eq!(problem.errors[0].message, "is taken");
        assert_eq!(problem.message(), "The request is invalid");
    }
}

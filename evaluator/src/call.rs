//! One HTTP call to a provider, as the pure provider modules describe it and `http` performs it.

/// How the parameters travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// POST form; on 405 or 501 the same as a GET query (client_golang's `DoGetFallback`).
    PostForm,
    /// GET with the parameters as the query string.
    Get,
}

/// A call: path below the provider's targetServer and its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub path: &'static str,
    pub params: Vec<(&'static str, String)>,
    /// An already encoded query string sent as it is (Dynatrace: Keptn builds it by hand).
    pub raw_query: Option<String>,
}

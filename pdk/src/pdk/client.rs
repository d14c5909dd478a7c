use super::{
    entity::{Consumer, Credential},
    value, Bridge,
};
use crate::Result;
use rmpv::Value;

/// `kong.client`: the client connection and who it authenticated as.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    /// `kong.client.tls`: the client's TLS connection.
    pub tls: ClientTls<'a>,
    bridge: Bridge<'a>,
}

impl<'a> Client<'a> {
    pub(crate) fn new(bridge: Bridge<'a>) -> Self {
        Client {
            tls: ClientTls { bridge },
            bridge,
        }
    }

    /// The address of the peer that connected to Kong (a load balancer, perhaps).
    /// Phases: certificate, rewrite, access, response.
    pub fn get_ip(&self) -> Result<String> {
        self.bridge
            .call_as("kong.client.get_ip", vec![], value::string)
    }

    /// The client's address, from `X-Forwarded-For` when the peer is trusted
    /// (`trusted_ips`). Phases: certificate, rewrite, access, response.
    pub fn get_forwarded_ip(&self) -> Result<String> {
        self.bridge
            .call_as("kong.client.get_forwarded_ip", vec![], value::string)
    }

    /// The port of the peer that connected to Kong. Phases: certificate, rewrite, access,
    /// response.
    pub fn get_port(&self) -> Result<u16> {
        self.bridge
            .call_as("kong.client.get_port", vec![], value::u16_integer)
    }

    /// The client's port, forwarded by a trusted peer. Phases: certificate, rewrite, access,
    /// response.
    pub fn get_forwarded_port(&self) -> Result<u16> {
        self.bridge
            .call_as("kong.client.get_forwarded_port", vec![], value::u16_integer)
    }

    /// The authenticated credential, `None` before any plugin authenticated the request.
    /// Phases: access, response, log.
    pub fn get_credential(&self) -> Result<Option<Credential>> {
        self.bridge
            .call_as("kong.client.get_credential", vec![], value::optional)
    }

    /// The consumer with id `consumer_id` (and, with `search_by_username`, else the one with
    /// that username), from Kong's cache or database; `None` when there is none.
    /// Phases: access, response, log.
    pub fn load_consumer(
        &self,
        consumer_id: &str,
        search_by_username: bool,
    ) -> Result<Option<Consumer>> {
        self.bridge.call_as(
            "kong.client.load_consumer",
            vec![Value::from(consumer_id), Value::Boolean(search_by_username)],
            value::optional,
        )
    }

    /// The authenticated consumer, `None` when there is none. Phases: access, response, log.
    pub fn get_consumer(&self) -> Result<Option<Consumer>> {
        self.bridge
            .call_as("kong.client.get_consumer", vec![], value::optional)
    }

    /// Sets the authenticated consumer and credential for the rest of the request, for every
    /// plugin and the log serializer. Phase: access.
    ///
    /// Kong also accepts a credential without a consumer, but that cannot be sent: Kong would
    /// drop every argument after the `nil` consumer (a Lua argument list ends at its first `nil`).
    pub fn authenticate(&self, consumer: &Consumer, credential: Option<&Credential>) -> Result<()> {
        const METHOD: &str = "kong.client.authenticate";
        let mut args = vec![value::encode(METHOD, consumer)?];
        if let Some(credential) = credential {
            args.push(value::encode(METHOD, credential)?);
        }
        self.bridge.call_unit(METHOD, args)
    }

    /// `http`, `https`, `tcp`, `tls`, … as the route matched it; with `allow_terminated`,
    /// `https` also for TLS terminated by a trusted proxy (`X-Forwarded-Proto`). `None` when
    /// there is no route. Phases: access, response.
    pub fn get_protocol(&self, allow_terminated: bool) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.client.get_protocol",
            vec![Value::Boolean(allow_terminated)],
            value::optional_string,
        )
    }
}

/// `kong.client.tls`: the client's TLS connection.
#[derive(Clone, Copy)]
pub struct ClientTls<'a> {
    bridge: Bridge<'a>,
}

/// The outcome of client certificate verification, for
/// [`set_client_verify`](ClientTls::set_client_verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientVerify {
    /// The certificate was verified (`SUCCESS`).
    Success,
    /// No certificate was presented (`NONE`).
    None,
    /// Verification failed, for this reason (`FAILED:<reason>`).
    Failed(String),
}

impl ClientVerify {
    /// Kong's spelling: `SUCCESS`, `NONE`, `FAILED:<reason>`.
    pub fn as_kong_str(&self) -> String {
        match self {
            ClientVerify::Success => "SUCCESS".into(),
            ClientVerify::None => "NONE".into(),
            ClientVerify::Failed(reason) => format!("FAILED:{reason}"),
        }
    }
}

impl ClientTls<'_> {
    /// Asks the client for a certificate during the handshake (any CA: Kong's `ca_certs` argument
    /// cannot be sent over the protocol). `true` when the request was made. Phase: certificate.
    pub fn request_client_certificate(&self) -> Result<bool> {
        self.bridge.call_as(
            "kong.client.tls.request_client_certificate",
            vec![],
            value::done,
        )
    }

    /// Prevents TLS session resumption for this connection; `true` when done. Phase:
    /// certificate.
    pub fn disable_session_reuse(&self) -> Result<bool> {
        self.bridge
            .call_as("kong.client.tls.disable_session_reuse", vec![], value::done)
    }

    /// The client's certificate and chain as PEM, `None` when it sent none.
    /// Phases: rewrite, access.
    pub fn get_full_client_certificate_chain(&self) -> Result<Option<String>> {
        self.bridge.call_as(
            "kong.client.tls.get_full_client_certificate_chain",
            vec![],
            value::optional_string,
        )
    }

    /// Overrides the verification result nginx reports (`$ssl_client_verify`) for the client
    /// certificate. Phases: rewrite, access.
    pub fn set_client_verify(&self, verify: &ClientVerify) -> Result<()> {
        self.bridge.call_unit(
            "kong.client.tls.set_client_verify",
            vec![Value::from(verify.as_kong_str())],
        )
    }
}

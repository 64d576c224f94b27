//! SASL GSSAPI (Kerberos V5, RFC 4752) on the server side, as ZooKeeper
//! does it with the JDK's GSSAPI SASL server when its JAAS `Server` section
//! logs in with `Krb5LoginModule`: the client's AP-REQ is accepted with the
//! service key from the keytab, the server answers with its AP-REP, then
//! offers "no security layer" in a wrapped token and takes the client's
//! wrapped choice. The GSSAPI work is the system's MIT library through
//! `libgssapi`; this module holds the credential and the SASL steps.
//!
//! Accepting a context reads the keytab and writes the replay cache: a
//! little blocking file I/O on the shard, once per authentication.

use std::ffi::{c_void, CString};
use std::fmt;
use std::path::Path;
use std::ptr;

use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::Cred;
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi_sys as sys;

use super::digest_md5::Step;

/// The security layers this server offers: none, only authentication
/// (RFC 4752's bit 1), as ZooKeeper without `javax.security.sasl.qop`.
const LAYER_NONE: u8 = 0x01;
/// The largest wrapped message the server would take, as the JDK offers it.
const MAX_BUFFER: u32 = 65536;
/// The largest token taken from a client: a Kerberos AP-REQ with a PAC is a
/// few kilobytes; ZooKeeper's own limit on a packet is far larger.
const MAX_TOKEN: usize = 64 * 1024;
/// The Kerberos principal name type, 1.2.840.113554.1.2.2.1.
const KRB5_PRINCIPAL_NAME: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";

/// The service's accepting credential: its principal's key from a keytab.
#[derive(Clone)]
pub struct Acceptor {
    cred: Cred,
    principal: String,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("principal", &self.principal)
            .finish()
    }
}

impl Acceptor {
    /// Takes `principal`'s key from `keytab` (`gss_acquire_cred_from`, so
    /// the process environment is left alone); fails when the keytab cannot
    /// be read or has no key for the principal.
    pub fn new(principal: &str, keytab: &Path) -> Result<Acceptor, String> {
        let name_text = CString::new(principal)
            .map_err(|_| format!("principal {principal:?} has a NUL byte"))?;
        let keytab_text = CString::new(keytab.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("keytab path {} has a NUL byte", keytab.display()))?;
        let failed = |what: &str, major: u32, minor: u32| {
            let error = GssError {
                major: MajorFlags::from_bits_retain(major),
                minor,
            };
            format!("{what} for {principal} from {}: {error}", keytab.display())
        };
        let mut name_type = sys::gss_OID_desc {
            length: KRB5_PRINCIPAL_NAME.len() as u32,
            elements: KRB5_PRINCIPAL_NAME.as_ptr() as *mut c_void,
        };
        let mut name_buffer = sys::gss_buffer_desc {
            length: name_text.as_bytes().len(),
            value: name_text.as_ptr() as *mut c_void,
        };
        let mut minor = 0u32;
        let mut name: sys::gss_name_t = ptr::null_mut();
        // SAFETY: every pointer is to a live local; the library copies the
        // name and the OID, and `name` is released below.
        let major = unsafe {
            sys::gss_import_name(&mut minor, &mut name_buffer, &mut name_type, &mut name)
        };
        if major != sys::GSS_S_COMPLETE {
            return Err(failed("cannot read the principal name", major, minor));
        }
        let mut element = sys::gss_key_value_element_desc {
            key: c"keytab".as_ptr(),
            value: keytab_text.as_ptr(),
        };
        let store = sys::gss_key_value_set_desc {
            count: 1,
            elements: &mut element,
        };
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        // SAFETY: `name` came from gss_import_name, the store's strings live
        // until the call returns, and `cred` is handed to `Cred`, which
        // releases it.
        let major = unsafe {
            sys::gss_acquire_cred_from(
                &mut minor,
                name,
                sys::_GSS_C_INDEFINITE,
                ptr::null_mut(),
                sys::GSS_C_ACCEPT as sys::gss_cred_usage_t,
                &store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let acquire_minor = minor;
        // SAFETY: `name` is ours and not used again.
        unsafe { sys::gss_release_name(&mut minor, &mut name) };
        if major != sys::GSS_S_COMPLETE {
            return Err(failed("cannot take the service key", major, acquire_minor));
        }
        Ok(Acceptor {
            // SAFETY: gss_acquire_cred_from gave us the only handle to it.
            cred: unsafe { Cred::from_c(cred) },
            principal: principal.to_owned(),
        })
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }
}

enum Stage {
    /// Waiting for the client's AP-REQ (or the next context token).
    Accepting,
    /// The context is set up; the client acknowledges with an empty token.
    Established,
    /// The security-layer offer went out; the client's choice comes back.
    Offered,
    Complete,
    Failed,
}

/// One connection's GSSAPI exchange.
pub struct GssapiServer {
    context: ServerCtx,
    stage: Stage,
}

impl GssapiServer {
    pub fn new(acceptor: &Acceptor) -> GssapiServer {
        GssapiServer {
            context: ServerCtx::new(Some(acceptor.cred.clone())),
            stage: Stage::Accepting,
        }
    }

    /// Whether the exchange has ended, proven or failed.
    pub fn is_over(&self) -> bool {
        matches!(self.stage, Stage::Complete | Stage::Failed)
    }

    /// Takes the client's next token; the token to answer with, or why the
    /// client is not authenticated (the exchange is then over).
    pub fn step(&mut self, token: &[u8]) -> Result<Step, String> {
        let result = self.advance(token);
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn advance(&mut self, token: &[u8]) -> Result<Step, String> {
        if token.len() > MAX_TOKEN {
            return Err(format!(
                "GSSAPI token of {} bytes (at most {MAX_TOKEN})",
                token.len()
            ));
        }
        match self.stage {
            Stage::Accepting => {
                if token.is_empty() {
                    return Err("GSSAPI exchange began without a context token".into());
                }
                let reply = self
                    .context
                    .step(token, None)
                    .map_err(|e| format!("GSSAPI context not accepted: {e}"))?;
                if self.context.is_complete() {
                    self.stage = Stage::Established;
                }
                Ok(Step::Challenge(
                    reply.map(|b| b.to_vec()).unwrap_or_default(),
                ))
            }
            Stage::Established => {
                if !token.is_empty() {
                    return Err("GSSAPI: the client's acknowledgement was not empty".into());
                }
                let size = MAX_BUFFER.to_be_bytes();
                let offer = [LAYER_NONE, size[1], size[2], size[3]];
                let wrapped = self
                    .context
                    .wrap(false, &offer)
                    .map_err(|e| format!("GSSAPI wrap failed: {e}"))?;
                self.stage = Stage::Offered;
                Ok(Step::Challenge(wrapped.to_vec()))
            }
            Stage::Offered => {
                let choice = self.context.unwrap(token).map_err(|e| {
                    format!("GSSAPI: the client's layer choice does not unwrap: {e}")
                })?;
                if choice.len() < 4 {
                    return Err(format!(
                        "GSSAPI: the client's layer choice has {} bytes",
                        choice.len()
                    ));
                }
                if choice[0] != LAYER_NONE {
                    return Err(format!(
                        "GSSAPI: the client chose security layer {:#04x}; only authentication (0x01) is offered",
                        choice[0]
                    ));
                }
                let user = self
                    .context
                    .source_name()
                    .and_then(|name| name.display_name())
                    .map_err(|e| format!("GSSAPI: no client name: {e}"))?;
                let user = String::from_utf8(user.to_vec())
                    .map_err(|_| "GSSAPI: the client name is not UTF-8".to_owned())?;
                self.stage = Stage::Complete;
                Ok(Step::Done {
                    token: Vec::new(),
                    user,
                })
            }
            Stage::Complete => Err("GSSAPI exchange is already complete".into()),
            Stage::Failed => Err("GSSAPI exchange already failed".into()),
        }
    }
}

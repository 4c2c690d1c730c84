//! A small binding to Linux-PAM for `pam.servicename` (methods `pam.username`, `pam.address`
//! and `pam.any`).
//!
//! Why it looks like this:
//! - PAM modules are not guaranteed to be thread-safe (many keep static state, call
//!   non-reentrant libc functions or fork helpers), so calls must be serialised. `authenticate`
//!   takes a process-wide lock around the whole PAM transaction; callers should still run it from
//!   a single blocking thread, as one call may block for seconds (pam_unix sleeps about two
//!   seconds after a failure).
//! - Modules such as pam_unix need to read `/etc/shadow`, so this runs in the privileged helper
//!   process, never in the unprivileged workers.
//! - The password never appears in an error or in `Debug` output. The only copies we make are the
//!   ones the conversation function hands to PAM (which frees them, Linux-PAM wiping them first);
//!   copies we free ourselves on an error path are zeroed first.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::ptr;
use std::sync::Mutex;

/// The user name PAM gets when there is none (`pam.address`), as Dante does.
const RHOST_USER: &CStr = c"rhostusr";

// From <security/_pam_types.h> (Linux-PAM).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_SILENT: c_int = 0x8000;
const PAM_RHOST: c_int = 4;
const PAM_RUSER: c_int = 8;
const PAM_FAIL_DELAY: c_int = 10;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: c_int = 32;

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<
        unsafe extern "C" fn(
            num_msg: c_int,
            msg: *mut *const PamMessage,
            resp: *mut *mut PamResponse,
            appdata_ptr: *mut c_void,
        ) -> c_int,
    >,
    appdata_ptr: *mut c_void,
}

/// Opaque `pam_handle_t`.
#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// Serialises PAM transactions in this process (see the module documentation).
static PAM_LOCK: Mutex<()> = Mutex::new(());

/// What PAM is given.
pub struct PamRequest<'a> {
    /// `pam.servicename`, e.g. "sockd".
    pub service: &'a str,
    /// None for `pam.address` (then PAM_USER and PAM_RUSER are "rhostusr", as Dante does).
    pub user: Option<&'a str>,
    /// None when no password is available (`pam.address`, `pam.any` without a user name); a
    /// module that prompts then gets a conversation error.
    pub password: Option<&'a [u8]>,
    /// The client's address as text, set as PAM_RHOST.
    pub rhost: Option<&'a str>,
}

impl fmt::Debug for PamRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PamRequest")
            .field("service", &self.service)
            .field("user", &self.user)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("rhost", &self.rhost)
            .finish()
    }
}

/// The PAM call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamStep {
    Start,
    SetItem,
    Authenticate,
    AcctMgmt,
}

impl fmt::Display for PamStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PamStep::Start => "pam_start",
            PamStep::SetItem => "pam_set_item",
            PamStep::Authenticate => "pam_authenticate",
            PamStep::AcctMgmt => "pam_acct_mgmt",
        })
    }
}

/// Why `authenticate` refused. Holds no password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PamError {
    /// A PAM call returned `code`; `message` is pam_strerror's text for it.
    #[error("{step}: {message} (PAM error {code})")]
    Pam {
        step: PamStep,
        code: i32,
        message: String,
    },
    /// A field could not be handed to PAM (it holds a NUL byte); PAM was not called.
    #[error("PAM {0} holds a NUL byte")]
    BadInput(&'static str),
}

/// Runs one PAM transaction: pam_start, PAM_RHOST (and PAM_RUSER without a user),
/// pam_authenticate and pam_acct_mgmt (both `PAM_SILENT`), then pam_end with the last status.
///
/// Blocking; may take seconds (modules sleep after failures). Serialised process-wide.
pub fn authenticate(req: &PamRequest<'_>) -> Result<(), PamError> {
    let (r, delay) = authenticate_deferring_delay(req);
    std::thread::sleep(delay);
    r
}

/// As [`authenticate`], but the failure delay modules ask for (pam_unix: about 2 s) is returned
/// instead of slept inside the serialised transaction, so one wrong password does not stall
/// every other login; the caller must wait it out before answering the client.
pub fn authenticate_deferring_delay(
    req: &PamRequest<'_>,
) -> (Result<(), PamError>, std::time::Duration) {
    let mut delay_us = 0;
    let r = transaction(req, &mut delay_us);
    (r, std::time::Duration::from_micros(u64::from(delay_us)))
}

/// One transaction; `delay_us` gets the failure delay the modules asked for.
fn transaction(req: &PamRequest<'_>, delay_us: &mut u32) -> Result<(), PamError> {
    let service = CString::new(req.service).map_err(|_| PamError::BadInput("service"))?;
    let user = match req.user {
        Some(user) => CString::new(user).map_err(|_| PamError::BadInput("user"))?,
        None => RHOST_USER.to_owned(),
    };
    let rhost = req
        .rhost
        .map(CString::new)
        .transpose()
        .map_err(|_| PamError::BadInput("rhost"))?;
    // The password becomes a C string only inside the conversation function, where it could
    // not be refused cleanly: check it here, before PAM is involved.
    if req.password.is_some_and(|p| p.contains(&0)) {
        return Err(PamError::BadInput("password"));
    }

    let data = ConvData {
        password: req.password,
        delay_us: std::cell::Cell::new(0),
    };
    let conv = PamConv {
        conv: Some(conversation),
        appdata_ptr: ptr::from_ref(&data).cast_mut().cast(),
    };

    // The lock guards no data, only PAM itself: poisoning (an earlier caller panicked) does not
    // matter.
    let _serialised = PAM_LOCK.lock().unwrap_or_else(|e| e.into_inner());

    let mut handle: *mut PamHandle = ptr::null_mut();
    // SAFETY: `service` and `user` are NUL-terminated strings alive for the call, `conv` is a
    // valid pam_conv, and `handle` is a valid place for the out-pointer. Linux-PAM copies the
    // pam_conv struct; its appdata_ptr (`data`) and the conversation function outlive the handle,
    // which `Transaction` ends before this function returns.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut handle) };
    if rc != PAM_SUCCESS {
        let err = pam_error(handle, PamStep::Start, rc);
        if !handle.is_null() {
            // SAFETY: a non-null handle came from pam_start and has not been ended.
            unsafe { pam_end(handle, rc) };
        }
        return Err(err);
    }
    let mut tx = Transaction {
        handle,
        status: PAM_SUCCESS,
    };

    let delay_fn: unsafe extern "C" fn(c_int, std::os::raw::c_uint, *mut c_void) = record_delay;
    // SAFETY: the handle is live; PAM_FAIL_DELAY takes a function pointer of exactly this type,
    // stored by PAM and called (with our appdata_ptr) only during this transaction.
    let rc = unsafe { pam_set_item(tx.handle, PAM_FAIL_DELAY, delay_fn as *const c_void) };
    tx.check(PamStep::SetItem, rc)?;
    let result = (|| {
        if let Some(rhost) = &rhost {
            tx.set_item(PAM_RHOST, rhost)?;
        }
        if req.user.is_none() {
            tx.set_item(PAM_RUSER, RHOST_USER)?;
        }
        // SAFETY: `tx.handle` is a live handle from pam_start; the conversation data it points
        // to (`data`, `conv`) is alive on this stack frame.
        let rc = unsafe { pam_authenticate(tx.handle, PAM_SILENT) };
        tx.check(PamStep::Authenticate, rc)?;
        // SAFETY: as for pam_authenticate.
        let rc = unsafe { pam_acct_mgmt(tx.handle, PAM_SILENT) };
        tx.check(PamStep::AcctMgmt, rc)
    })();
    *delay_us = data.delay_us.get();
    result
    // `tx` drops here (before `data`, `conv` and the C strings, declared earlier): pam_end.
}

/// A started PAM transaction; dropping it calls pam_end with the last status.
struct Transaction {
    handle: *mut PamHandle,
    status: c_int,
}

impl Transaction {
    fn check(&mut self, step: PamStep, rc: c_int) -> Result<(), PamError> {
        self.status = rc;
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(pam_error(self.handle, step, rc))
        }
    }

    fn set_item(&mut self, item: c_int, value: &CStr) -> Result<(), PamError> {
        // SAFETY: the handle is live; PAM_RHOST and PAM_RUSER take a NUL-terminated string,
        // which PAM copies (strdup) before returning.
        let rc = unsafe { pam_set_item(self.handle, item, value.as_ptr().cast()) };
        self.check(PamStep::SetItem, rc)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful pam_start and is ended only here, once.
        unsafe { pam_end(self.handle, self.status) };
    }
}

/// Builds the error for `rc`, copying pam_strerror's text.
fn pam_error(handle: *mut PamHandle, step: PamStep, rc: c_int) -> PamError {
    // SAFETY: pam_strerror only maps the number to a static string (Linux-PAM does not use the
    // handle, and its header does not require it to be non-null, so a failed pam_start's null
    // handle is fine). The result is either null or a NUL-terminated string that we copy at once.
    let text = unsafe { pam_strerror(handle, rc) };
    let message = if text.is_null() {
        format!("unknown PAM error {rc}")
    } else {
        // SAFETY: non-null, NUL-terminated, alive at least until the next PAM call.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    PamError::Pam {
        step,
        code: rc,
        message,
    }
}

/// What the conversation function can answer with.
struct ConvData<'a> {
    password: Option<&'a [u8]>,
    /// The longest failure delay a module asked for, in microseconds (see `record_delay`).
    delay_us: std::cell::Cell<u32>,
}

/// PAM_FAIL_DELAY callback: modules such as pam_unix ask for a pause after a failure, which
/// PAM would otherwise sleep inside the transaction, holding `PAM_LOCK` and so every other
/// login. We only note it; the caller waits it out after the lock is released.
///
/// # Safety
/// Called by Linux-PAM with the `appdata_ptr` of our `PamConv`, a `ConvData` that outlives
/// the transaction.
unsafe extern "C" fn record_delay(
    _retval: c_int,
    usec: std::os::raw::c_uint,
    appdata: *mut c_void,
) {
    if appdata.is_null() {
        return;
    }
    // SAFETY: `appdata` is the `&ConvData` set in `authenticate`, alive for the whole
    // transaction; only shared access through a Cell is used.
    let data = unsafe { &*appdata.cast::<ConvData<'_>>() };
    data.delay_us.set(data.delay_us.get().max(usec));
}

/// The PAM conversation: prompts get the password, messages get no answer.
///
/// # Safety
/// Called by libpam only: `msg` points to `num_msg` message pointers (the Linux-PAM layout),
/// `resp` is a valid out-pointer, and `appdata_ptr` is the `ConvData` given to pam_start.
unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    if !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
        return PAM_CONV_ERR;
    }
    // In range 1..=32 just above.
    let count = num_msg.unsigned_abs() as usize;
    // SAFETY: appdata_ptr is the `&ConvData` authenticate() passed to pam_start, alive for the
    // whole transaction; we only read it.
    let data = unsafe { &*appdata_ptr.cast::<ConvData<'_>>() };

    // SAFETY: calloc with a small count and the element size; PAM frees the array with free().
    let replies = unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: libpam passes `num_msg` valid message pointers; `i < count == num_msg`.
        let message = unsafe { *msg.add(i) };
        // SAFETY: a non-null message pointer from libpam points to a valid pam_message.
        let Some(message) = (unsafe { message.as_ref() }) else {
            // SAFETY: `replies` holds `count` entries from calloc, filled by us.
            unsafe { free_replies(replies, count) };
            return PAM_CONV_ERR;
        };
        let answer = match message.msg_style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => match data.password {
                Some(password) => match c_copy(password) {
                    Some(copy) => copy,
                    None => {
                        // SAFETY: as above.
                        unsafe { free_replies(replies, count) };
                        return PAM_BUF_ERR;
                    }
                },
                None => {
                    // SAFETY: as above.
                    unsafe { free_replies(replies, count) };
                    return PAM_CONV_ERR;
                }
            },
            PAM_ERROR_MSG | PAM_TEXT_INFO => ptr::null_mut(),
            _ => {
                // SAFETY: as above.
                unsafe { free_replies(replies, count) };
                return PAM_CONV_ERR;
            }
        };
        // SAFETY: `i < count`, inside the calloc'd array; resp_retcode stays 0 from calloc.
        unsafe { (*replies.add(i)).resp = answer };
    }
    // SAFETY: `resp` is libpam's valid out-pointer; ownership of the array passes to libpam.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// A malloc'd, NUL-terminated copy of `bytes` (which hold no NUL), or None if malloc fails.
fn c_copy(bytes: &[u8]) -> Option<*mut c_char> {
    // SAFETY: malloc of len + 1 bytes (no overflow: a slice is at most isize::MAX bytes).
    let buf = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
    if buf.is_null() {
        return None;
    }
    // SAFETY: `buf` has room for len + 1 bytes and does not overlap `bytes`.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Some(buf.cast())
}

/// Wipes and frees the answers in `replies`, then the array itself.
///
/// # Safety
/// `replies` is a calloc'd array of `count` responses whose non-null `resp` fields are
/// NUL-terminated strings from `c_copy`, not yet handed to libpam.
unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: `i < count`, inside the array (caller's contract).
        let answer = unsafe { (*replies.add(i)).resp };
        if !answer.is_null() {
            // SAFETY: `answer` is a NUL-terminated malloc'd string we own (caller's contract);
            // wipe its bytes, then free it.
            unsafe {
                libc::explicit_bzero(answer.cast(), libc::strlen(answer));
                libc::free(answer.cast());
            }
        }
    }
    // SAFETY: the array came from calloc and is freed once.
    unsafe { libc::free(replies.cast()) };
}

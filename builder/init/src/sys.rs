//! Every system call that needs `unsafe`, each behind a safe function.
//!
//! The rest of the crate has no `unsafe` (`#![deny(unsafe_code)]` in main.rs, allowed
//! only here). Each wrapper converts Rust strings to NUL-terminated C strings and
//! returns `std::io::Error` from `errno` on failure.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Calls mount(2). `fstype` and `data` may be absent, as for `MS_MOVE`.
pub fn mount(source: &str, target: &str, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let source = c_string(source)?;
    let target = c_string(target)?;
    let fstype = fstype.map(c_string).transpose()?;
    let data = data.map(c_string).transpose()?;
    let fstype_ptr = fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    let data_ptr = data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast());
    // SAFETY: every pointer is either null (allowed for fstype and data) or points to a
    // NUL-terminated CString that lives until this call returns.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype_ptr, flags, data_ptr) })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Block,
    Char,
}

/// Creates a device node with mode 0600.
pub fn mknod(path: &str, kind: NodeKind, major: u32, minor: u32) -> io::Result<()> {
    let path = c_string(path)?;
    let file_type = match kind {
        NodeKind::Block => libc::S_IFBLK,
        NodeKind::Char => libc::S_IFCHR,
    };
    // SAFETY: `path` is a NUL-terminated CString that outlives the call.
    check(unsafe { libc::mknod(path.as_ptr(), file_type | 0o600, libc::makedev(major, minor)) })
}

/// Adds a `user` key to the calling thread's keyring and returns its serial number.
pub fn add_user_key(description: &str, payload: &[u8]) -> io::Result<i32> {
    let key_type = c"user";
    let description = c_string(description)?;
    // SAFETY: add_key(2) reads the two NUL-terminated strings and `payload.len()` bytes
    // from `payload`, all of which live until the call returns. The variadic syscall
    // takes the arguments in the order (type, description, payload, plen, keyring).
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            key_type.as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::c_long::from(libc::KEY_SPEC_THREAD_KEYRING),
        )
    };
    if serial < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(serial).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "key serial out of range"))
}

/// Unlinks a key from the calling thread's keyring (`keyctl(KEYCTL_UNLINK, ...)`).
pub fn unlink_thread_key(serial: i32) -> io::Result<()> {
    // SAFETY: KEYCTL_UNLINK takes two integers and no pointers.
    let result = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::c_long::from(libc::KEYCTL_UNLINK),
            libc::c_long::from(serial),
            libc::c_long::from(libc::KEY_SPEC_THREAD_KEYRING),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Issues a device-mapper ioctl on `/dev/mapper/control`.
///
/// `buffer` contains a `struct dm_ioctl` followed by its payload. The kernel reads and
/// writes `data_size` bytes (the u32 at offset 12) from the buffer start, so this
/// function rejects a buffer shorter than `data_size` or than the header itself.
pub fn dm_ioctl(control: &File, request: libc::c_ulong, buffer: &mut [u8], header_size: usize) -> io::Result<()> {
    let data_size = buffer
        .get(12..16)
        .and_then(|field| <[u8; 4]>::try_from(field).ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "dm ioctl buffer too short"))?;
    if buffer.len() < header_size || (data_size as usize) > buffer.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "dm ioctl data_size exceeds the buffer"));
    }
    // SAFETY: the fd is open for the lifetime of `control`. The kernel accesses at most
    // `data_size` bytes from the buffer start, and the check above ensures that the
    // buffer is at least that long and contains a whole header. The buffer is exclusively
    // borrowed for the call.
    check(unsafe { libc::ioctl(control.as_raw_fd(), request, buffer.as_mut_ptr()) })
}

/// Returns whether `fd` is an open file descriptor.
pub fn fd_is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD takes no pointer argument and fails with EBADF for a closed fd.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Makes `file` the process's standard input, output and error.
pub fn attach_stdio(file: &File) -> io::Result<()> {
    for target in 0..=2 {
        // SAFETY: dup2 takes two integers; `file` keeps its descriptor open during the call.
        check(unsafe { libc::dup2(file.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Waits until everything written to the terminal `fd` has been transmitted, so that
/// a last console line is not lost when the machine halts.
pub fn drain_terminal(fd: libc::c_int) {
    // SAFETY: tcdrain takes an integer descriptor; errors (not a terminal) are ignored.
    unsafe {
        libc::tcdrain(fd);
    }
}

/// Flushes the filesystems and halts the machine. Never returns: if reboot(2) fails,
/// the process sleeps forever because PID 1 must not exit.
pub fn halt() -> ! {
    // SAFETY: sync and reboot take no pointers. RB_HALT_SYSTEM stops the machine
    // without running any further user space, which is the intended effect.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_HALT_SYSTEM);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Replaces the process image with `path`, with `argv` = [`path`] and the current
/// environment. Returns only on failure.
pub fn execv(path: &CStr) -> io::Error {
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: `path` is NUL-terminated and `argv` is a null-terminated array of
    // pointers to NUL-terminated strings, both alive for the call.
    unsafe {
        libc::execv(path.as_ptr(), argv.as_ptr());
    }
    io::Error::last_os_error()
}

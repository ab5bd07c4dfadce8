//! Symbolic errno names for console messages. The names are what kernel sources and
//! documentation use (EKEYREJECTED, EBADMSG), so they are easier to look up than the
//! strerror text.

use std::io;

/// Returns the symbolic name of a Linux errno value, if it is one this init can meet.
pub fn name(code: i32) -> Option<&'static str> {
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENOMSG => "ENOMSG",
        libc::ENODATA => "ENODATA",
        libc::EBADMSG => "EBADMSG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::ENOMEDIUM => "ENOMEDIUM",
        libc::EMEDIUMTYPE => "EMEDIUMTYPE",
        libc::ENOKEY => "ENOKEY",
        libc::EKEYEXPIRED => "EKEYEXPIRED",
        libc::EKEYREVOKED => "EKEYREVOKED",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::EUCLEAN => "EUCLEAN",
        libc::EBADE => "EBADE",
        _ => return None,
    };
    Some(name)
}

/// Formats an I/O error as its errno name (`EKEYREJECTED`), or `errno N` for an
/// unlisted value, or the message for an error that did not come from the kernel.
pub fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => name(code).map_or_else(|| format!("errno {code}"), str::to_string),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_key_and_policy_errors() {
        assert_eq!(name(129), Some("EKEYREJECTED"));
        assert_eq!(name(126), Some("ENOKEY"));
        assert_eq!(name(74), Some("EBADMSG"));
        assert_eq!(name(116), Some("ESTALE"));
        assert_eq!(name(4095), None);
    }

    #[test]
    fn describe_formats() {
        assert_eq!(describe(&io::Error::from_raw_os_error(libc::ENOENT)), "ENOENT");
        assert_eq!(describe(&io::Error::from_raw_os_error(4095)), "errno 4095");
        assert_eq!(describe(&io::Error::other("short reply")), "short reply");
    }
}

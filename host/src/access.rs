//! Reading the files ferry is given — its config, the Teleport identity, the
//! certificates and keys — and saying plainly why one cannot be read. A
//! service user that may not read a root-owned file is the first failure of
//! many installations, and `Permission denied (os error 13)` names neither
//! who is denied nor what to change: the error here names ferry's user, the
//! file's owner and mode (or the folder on the way that cannot be entered)
//! and the commands that fix it. Also the system's users and groups by name
//! and number (`ferry configure --group`), from the system's databases.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file's bytes; when permission is denied, an error saying who cannot
/// read what and how to allow it (see [`denied`]).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| explain(path, err))
}

/// The file's text; when permission is denied, as [`read`].
pub fn read_to_string(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|err| explain(path, err))
}

fn explain(path: &Path, err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::PermissionDenied { io::Error::new(io::ErrorKind::PermissionDenied, denied(path)) } else { err }
}

/// Why this process may not read `path`, on one line: who ferry runs as,
/// the file's (or the blocking folder's) owner and mode, and the fix.
pub fn denied(path: &Path) -> String {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let group = group_name(gid).unwrap_or_else(|| gid.to_string());
    let who = format!("ferry runs as uid {uid} ({}) gid {gid} ({group})", user_name(uid).unwrap_or_else(|| "no name".into()));
    if let Some(folder) = closed_folder(path) {
        let shown = folder.display();
        return format!(
            "permission denied: {who} and cannot enter the folder {shown} ({}); let the group in: `chgrp {group} {shown} && chmod g+x {shown}`",
            owner_and_mode(folder)
        );
    }
    let file = path.display();
    format!(
        "permission denied: {who} and the file is {}; let ferry's group read it: `chgrp {group} {file} && chmod 0640 {file}` \
         (`ferry configure --group {group}` writes its files so)",
        owner_and_mode(path)
    )
}

/// The first folder on the way to `path` that this process cannot enter
/// (stat of `folder/.` needs the right to search `folder`).
fn closed_folder(path: &Path) -> Option<&Path> {
    let mut folders: Vec<&Path> = path.ancestors().skip(1).filter(|folder| !folder.as_os_str().is_empty()).collect();
    folders.reverse();
    folders.into_iter().find(|folder| std::fs::metadata(folder.join(".")).is_err_and(|err| err.kind() == io::ErrorKind::PermissionDenied))
}

/// `owned by root:ferry mode 0640`, names where the system has them.
fn owner_and_mode(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => format!(
            "owned by {}:{} mode {:04o}",
            user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
            group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string()),
            meta.mode() & 0o7777
        ),
        Err(err) => format!("of unknown owner and mode ({})", crate::error::one_line(&err)),
    }
}

/// A group given by name or number, as its number: a number is taken as it
/// is, a name is looked up in the system's group database.
pub fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let name = CString::new(group).ok()?;
    lookup(|buf| {
        let mut entry = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local of the right type, and
        // `buf.len()` is the length of `buf`.
        let code = unsafe { libc::getgrnam_r(name.as_ptr(), entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found) };
        // SAFETY: when not null, `found` points to `entry`, which getgrnam_r filled.
        (code, (!found.is_null()).then(|| unsafe { (*found).gr_gid }))
    })
}

/// The name of group `gid` in the system's group database.
pub fn group_name(gid: u32) -> Option<String> {
    lookup(|buf| {
        let mut entry = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `group_id`.
        let code = unsafe { libc::getgrgid_r(gid, entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found) };
        // SAFETY: when not null, `found` points to the filled `entry`, whose
        // name is a NUL-terminated string in `buf`, still alive here.
        (code, (!found.is_null()).then(|| unsafe { CStr::from_ptr((*found).gr_name) }.to_string_lossy().into_owned()))
    })
}

/// The name of user `uid` in the system's user database.
pub fn user_name(uid: u32) -> Option<String> {
    lookup(|buf| {
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: as in `group_id`.
        let code = unsafe { libc::getpwuid_r(uid, entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found) };
        // SAFETY: as in `group_name`.
        (code, (!found.is_null()).then(|| unsafe { CStr::from_ptr((*found).pw_name) }.to_string_lossy().into_owned()))
    })
}

/// Runs a `get*_r` call with a buffer for its strings, growing the buffer
/// while the call says it is too small (`ERANGE`); any other failure, or no
/// such entry, is `None`.
fn lookup<T>(mut call: impl FnMut(&mut [libc::c_char]) -> (i32, Option<T>)) -> Option<T> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            (0, found) => return found,
            (libc::ERANGE, _) if size < 1 << 20 => size *= 4,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_come_from_the_system_databases() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("65532"), Some(65532), "a number is taken as it is (the image's user has no name here)");
        assert_eq!(group_id("no-such-group-for-ferry"), None);
        assert_eq!(group_id("nul\0name"), None);
    }

    #[test]
    fn other_errors_pass_through_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let err = read(&missing).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!err.to_string().contains("permission"), "{err}");
    }

    #[test]
    fn a_denied_file_is_described_with_owner_mode_and_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("client.key");
        std::fs::write(&file, "key").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let uid = rustix::process::getuid().as_raw();
        let text = denied(&file);
        let path = file.display();
        assert!(text.starts_with(&format!("permission denied: ferry runs as uid {uid} (")), "{text}");
        assert!(text.contains("mode 0600; let ferry's group read it: `chgrp "), "{text}");
        assert!(text.contains(&format!(" {path} && chmod 0640 {path}`")), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

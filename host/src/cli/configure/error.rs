//! What `ferry configure` refuses, each on one line naming the flag, the
//! value or the file.

use std::path::PathBuf;

/// Why `ferry configure` wrote nothing (or stopped at a file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// A flag's value does not parse or is out of range.
    #[error("{flag} `{value}`: {reason}")]
    Flag {
        /// The flag, as typed (`--ttl`).
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file ferry would write is there already, and `--force` was not given.
    #[error("{} exists; nothing was written (pass --force to overwrite the files of a previous run)", path.display())]
    Exists {
        /// The first such file, in the order ferry writes them.
        path: PathBuf,
    },
    /// The output folder cannot be made or is not a folder.
    #[error("cannot use the folder {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file ferry reads cannot be given to `--group`.
    #[error("cannot give {} to group {group}: {source} (run configure as root, or as a member of the group)", path.display())]
    Group {
        /// The file.
        path: PathBuf,
        /// The group, as given.
        group: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or certificate could not be made.
    #[error("cannot make the {what}: {reason}")]
    Pki {
        /// Which one (`server certificate`, `RSA key`).
        what: &'static str,
        /// The cause.
        reason: String,
    },
}

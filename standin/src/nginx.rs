//! nginx from Debian as a real, independent HTTPS receiver for ferry's
//! tests: OpenSSL, not rustls, verifies ferry's client certificate, and each
//! request's status, verification result, content type and body go to a
//! JSON access log. A second server inside the same nginx answers the
//! proxied request, because nginx reads `$request_body` only when it proxies
//! it.
//!
//! Test machinery, so behind the `nginx` feature, which ferry enables in its
//! dev-dependencies only.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The TLS files nginx serves with and verifies clients against.
#[derive(Debug, Clone)]
pub struct NginxTls {
    /// The server certificate (chain).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A file holding the key's passphrase, for an encrypted key.
    pub password_file: Option<PathBuf>,
    /// The CA that client certificates must chain to.
    pub ca: PathBuf,
}

/// A running nginx; stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where it listens for HTTPS, on 127.0.0.1.
    pub port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Where Debian installs nginx. A test that needs this peer fails
    /// without it rather than passing unseen: the README's test command
    /// (`./test`) installs it.
    pub fn binary() -> &'static str {
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .unwrap_or_else(|| panic!("nginx is not installed, and this test needs it as a real HTTPS peer: run ./test, which installs it, or `apt-get install nginx-light`"))
    }

    /// Starts `binary` with its config, logs and temporary files in `dir`,
    /// and waits (up to 20 s) until it listens; an nginx that exits first
    /// (a key it cannot open, say) is an error carrying its error log.
    pub fn start(binary: &str, dir: &Path, tls: &NginxTls) -> io::Result<Nginx> {
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let (port, backend) = (free_port()?, free_port()?);
        std::fs::write(dir.join("nginx.conf"), config(port, backend, tls))?;
        let child =
            Command::new(binary).arg("-p").arg(dir).args(["-c", "nginx.conf"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let mut nginx = Nginx { child, dir: dir.to_owned(), port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
            if nginx.child.try_wait()?.is_some() {
                return Err(io::Error::other(format!("nginx exited: {}", log())));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(io::Error::other(format!("nginx did not listen within 20 s: {}", log())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    /// Its HTTPS address, by the name its test certificates carry.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }

    /// One JSON object per request answered so far, oldest first: `status`,
    /// `verify` (`SUCCESS` when the client certificate verified),
    /// `content_type` and `body` (as text).
    pub fn logged(&self) -> Vec<serde_json::Value> {
        let log = std::fs::read_to_string(self.dir.join("logs/bodies.jsonl")).unwrap_or_default();
        log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(port: u16, backend: u16, tls: &NginxTls) -> String {
    let password = tls.password_file.as_ref().map(|file| format!(" ssl_password_file {};", file.display())).unwrap_or_default();
    format!(
        r#"user root;
worker_processes 1;
daemon off;
master_process off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  access_log off;
  log_format bodies escape=json '{{"status":$status,"verify":"$ssl_client_verify","content_type":"$content_type","body":"$request_body"}}';
  server {{
    listen 127.0.0.1:{backend};
    location / {{ default_type text/plain; return 200 "ok"; }}
  }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert}; ssl_certificate_key {key};{password}
    ssl_client_certificate {ca}; ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 16m; client_body_buffer_size 16m;
    access_log logs/bodies.jsonl bodies;
    location / {{ proxy_pass http://127.0.0.1:{backend}; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"#,
        cert = tls.cert.display(),
        key = tls.key.display(),
        ca = tls.ca.display(),
    )
}

//! nginx as a mirror: any static range server is one. Started in the
//! foreground with a generated configuration on a free loopback port; its
//! access log says how many requests and body bytes it served.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx; killed when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    work: PathBuf,
}

/// One access log line: status, body bytes sent, the Range header.
#[derive(Clone, Debug)]
pub struct Logged {
    pub status: u16,
    pub bytes: u64,
    pub range: String,
}

impl Nginx {
    /// Serves the files of `root`, with its configuration and logs in `work`. `None` when nginx is not
    /// installed, except under `CI=true`, where a missing nginx fails the test.
    pub fn start(root: &Path, work: &Path) -> Option<Nginx> {
        if !super::require_tool(Path::new(NGINX).exists(), NGINX, "apt-get install -y nginx") {
            return None;
        }
        fs::create_dir_all(work).unwrap();
        let mut last_error = String::new();
        for _ in 0..5 {
            // A free port: bind :0, close, use it (and retry when someone else took it meanwhile).
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let conf = work.join("nginx.conf");
            fs::write(&conf, config(root, work, port)).unwrap();
            let _ = fs::remove_file(work.join("access.log"));
            let error_log = work.join("error.log");
            let _ = fs::remove_file(&error_log);
            let mut child = Command::new(NGINX)
                .arg("-p")
                .arg(work)
                .arg("-e")
                .arg(&error_log)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    last_error = format!("nginx exited with {status}: {err}{}", read(&error_log));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Nginx { child, port, work: work.to_path_buf() });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("nginx did not listen on {port}: {}", read(&error_log));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_error.contains("in use") {
                break;
            }
        }
        panic!("cannot start nginx: {last_error}");
    }

    /// The URL of a file of the root.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The access log so far, waiting up to a second for at least `at_least` lines.
    pub fn log(&self, at_least: usize) -> Vec<Logged> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let lines: Vec<Logged> = read(&self.work.join("access.log"))
                .lines()
                .filter_map(|l| {
                    let mut it = l.splitn(3, ' ');
                    Some(Logged {
                        status: it.next()?.parse().ok()?,
                        bytes: it.next()?.parse().ok()?,
                        range: it.next()?.trim_matches('"').to_string(),
                    })
                })
                .collect();
            if lines.len() >= at_least || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn config(root: &Path, work: &Path, port: u16) -> String {
    let w = work.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format dare '$status $body_bytes_sent "$http_range"';
    access_log {w}/access.log dare;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"#,
        root = root.display()
    )
}

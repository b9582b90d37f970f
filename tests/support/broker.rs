//! Real processes for the MQTT tests: a mosquitto broker on a free port,
//! which a test can kill and restart, and `floe run` in the background.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mosquitto broker of the test's own. Persistence is on and the
/// per-client queue unlimited: without both, mosquitto loses messages on
/// a restart (it keeps nothing on disk) and drops the newest beyond 1,000
/// queued for an offline client.
pub struct Mosquitto {
    pub port: u16,
    /// A second free port, for a config that opens a second listener.
    pub spare_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::with_config(|_| "allow_anonymous true\n".into())
    }

    /// A broker with extra configuration, made from its spare port: more
    /// listeners (with TLS), authentication. It must say whether anonymous
    /// clients are allowed. A port taken meanwhile by another test is
    /// retried with new ones.
    pub fn with_config(extra: impl Fn(u16) -> String) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Mosquitto {
            port: 0,
            spare_port: 0,
            dir,
            child: None,
        };
        for _ in 0..5 {
            broker.port = free_port();
            broker.spare_port = free_port();
            // `user root`: started as root, mosquitto would otherwise switch
            // to the `mosquitto` user, which cannot write to the test's
            // directory, and would silently persist nothing. (Ignored when
            // not root.)
            let config = format!(
                "user root\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n\
                 max_queued_messages 0\nlog_dest file {dir}/mosquitto.log\n\
                 listener {} 127.0.0.1\n{}\n",
                broker.port,
                extra(broker.spare_port),
                dir = broker.dir.path().display(),
            );
            let path = broker.dir.path().join("mosquitto.conf");
            std::fs::write(path, config).expect("write config");
            if broker.try_spawn() {
                return broker;
            }
        }
        panic!(
            "mosquitto did not start; see {}/mosquitto.log",
            broker.dir.path().display()
        );
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no chance to save anything it has not saved already.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: it saves what it holds before it exits.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, from what it saved.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "mosquitto did not start on port {}",
            self.port
        );
    }

    /// Starts mosquitto; false if it exits instead of listening.
    fn try_spawn(&mut self) -> bool {
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto; .ci/run does it)");
        let mut exited = false;
        wait_for(Duration::from_secs(10), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        self.child = Some(child);
        !exited
    }

    /// Publishes each line as one message with mosquitto's own client.
    pub fn publish_lines(&self, topic: &str, qos: u8, lines: &[String]) {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-q", &qos.to_string(), "-l"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, lines.join("\n").as_bytes()).expect("write");
        std::io::Write::write_all(&mut stdin, b"\n").expect("write");
        drop(stdin);
        assert!(child.wait().expect("mosquitto_pub").success());
    }

    /// Publishes one message whose payload is `bytes`, as they are.
    pub fn publish_bytes(&self, topic: &str, bytes: &[u8]) {
        let file = self.dir.path().join("payload.bin");
        std::fs::write(&file, bytes).expect("write payload");
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-q", "1", "-f"])
            .arg(&file)
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success());
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `floe run` in the background, its stderr in a file.
pub struct Floe {
    child: Child,
    pub log: PathBuf,
}

impl Floe {
    /// Runs `floe ARGS` in `dir`, logging to `dir/LOG_NAME`.
    pub fn run(dir: &Path, log_name: &str, args: &[&str]) -> Floe {
        Floe::run_with(dir, log_name, args, &[])
    }

    /// As [`run`](Self::run), with environment variables set.
    pub fn run_with(dir: &Path, log_name: &str, args: &[&str], envs: &[(&str, &str)]) -> Floe {
        let log = dir.join(log_name);
        let child = super::floe()
            .args(args)
            .current_dir(dir)
            .env("FLOE_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("floe runs");
        Floe { child, log }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        let seen = wait_for(Duration::from_secs(20), || self.log().contains(text));
        assert!(seen, "floe never logged {text:?}:\n{}", self.log());
    }

    /// SIGTERM, then waits for it to drain and exit; returns the exit code.
    pub fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait()
    }

    /// SIGKILL: no draining, no last commit.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// Waits for it to exit by itself; returns the exit code and the log.
    pub fn wait(&mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("floe status") {
                return (status.code().unwrap_or(-1), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("floe did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Floe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

//! The simulator and daemon as child processes: spawning, stopping, and
//! reading their memory, CPU time and files.

use super::*;

/// `--linkfresh-bin`, when given.
static LINKFRESH_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub(crate) fn set_linkfresh_bin(bin: PathBuf) {
    let _ = LINKFRESH_BIN.set(bin);
}

pub(crate) fn linkfresh_bin() -> Result<PathBuf> {
    if let Some(bin) = LINKFRESH_BIN.get() {
        if !bin.is_file() {
            bail!("--linkfresh-bin {}: no such file", bin.display());
        }
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("linkfresh");
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` first",
            bin.display()
        );
    }
    Ok(bin)
}

pub(crate) fn free_addr() -> Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped.
pub(crate) struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .stdout(std::fs::File::create(dir.join(format!("{name}.out")))?)
            .stderr(std::fs::File::create(&log)?)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            child,
            name: name.into(),
            log,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait up to `limit`; true if it exited by itself.
    pub(crate) fn stop(&mut self, limit: Duration) -> bool {
        if !self.alive() {
            return true;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {limit:?}; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// SIGKILL, as a crash or an OOM kill would: no drain, no lease given back.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
pub(crate) fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// User+system CPU seconds a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

pub(crate) fn store_bytes(db: &Path) -> u64 {
    let s = db.to_string_lossy();
    file_size(db)
        + file_size(Path::new(&format!("{s}-wal")))
        + file_size(Path::new(&format!("{s}-shm")))
}

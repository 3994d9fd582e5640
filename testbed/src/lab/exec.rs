//! Running things in a lab's nodes: bounded commands, long-running
//! processes ([`Proc`]) and the checks tests build on them (ping, an HTTP
//! transfer, UDP counters).

use super::{Inner, Lab, Node, DEFAULT_EXEC_TIMEOUT};
use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Grace between SIGTERM and SIGKILL when a [`Proc`] is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` with stdin closed, collecting stdout/stderr, killing it (SIGKILL)
/// if it is still running after `timeout`.
pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {desc}"))?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait()?;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // A grandchild that inherited the pipes could keep them open: bounded join.
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if timed_out {
        bail!(
            "timed out after {:?}: {desc}\nstdout: {}\nstderr: {}",
            timeout,
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

impl Lab {
    fn ns_command<S: AsRef<OsStr>>(ns: &str, args: &[S]) -> Result<Command> {
        if args.is_empty() {
            bail!("empty command");
        }
        // `ip netns exec` execs the command in place (same PID), with /sys
        // remounted for the namespace.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        Ok(cmd)
    }

    /// Runs a command inside the node's namespace (bounded by
    /// [`DEFAULT_EXEC_TIMEOUT`]); returns its output whatever its exit status.
    pub fn exec<S: AsRef<OsStr>>(&self, node: &Node, args: &[S]) -> Result<Output> {
        self.exec_timeout(node, args, DEFAULT_EXEC_TIMEOUT)
    }

    /// [`Lab::exec`] with an explicit timeout.
    pub fn exec_timeout<S: AsRef<OsStr>>(
        &self,
        node: &Node,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        run_with_timeout(Self::ns_command(&node.ns, args)?, timeout)
    }

    /// Runs a command in the node; error (with its stderr) unless it exits 0.
    /// Returns stdout.
    pub fn run<S: AsRef<OsStr>>(&self, node: &Node, args: &[S]) -> Result<String> {
        let out = self.exec(node, args)?;
        if !out.status.success() {
            let argv: Vec<_> = args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            bail!(
                "in {}: `{}` failed ({}): {}{}",
                node.name,
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// True if the command exits 0 inside the node.
    pub fn ok<S: AsRef<OsStr>>(&self, node: &Node, args: &[S]) -> bool {
        self.exec(node, args)
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// One `ping -c1 -W1` from `node` to `dst`; true on reply.
    pub fn ping1(&self, node: &Node, dst: impl std::fmt::Display) -> bool {
        let d = dst.to_string();
        self.ok(node, &["ping", "-n", "-q", "-c", "1", "-W", "1", &d])
    }

    /// Pings `dst` from `node` once a second-ish until one reply or `timeout`.
    pub fn wait_ping(&self, node: &Node, dst: impl std::fmt::Display, timeout: Duration) -> bool {
        let d = dst.to_string();
        crate::wait_until_every(timeout, Duration::from_millis(50), || self.ping1(node, &d))
    }

    /// Serves `bytes` of random data over HTTP (python3's `http.server`)
    /// from `server` on `bind`, fetches it with `curl` from `client`, and
    /// checks the copy is intact (sha256 and byte for byte).
    pub fn http_transfer(
        &self,
        server: &Node,
        bind: impl std::fmt::Display,
        client: &Node,
        bytes: usize,
    ) -> Result<()> {
        let tag = format!("{}-{}", server.name, client.name);
        let blob = crate::rng::Rng::from_time().bytes(bytes);
        let src = self.write_file(&format!("www-{tag}/blob.bin"), &blob)?;
        let www = src
            .parent()
            .context("www dir")?
            .to_string_lossy()
            .into_owned();
        let dst = self.dir().join(format!("fetched-{tag}.bin"));
        let bind = bind.to_string();
        let _http = self.spawn(
            server,
            &format!("http-{tag}"),
            &[
                "python3",
                "-m",
                "http.server",
                "8000",
                "--bind",
                &bind,
                "--directory",
                &www,
            ],
        )?;
        let listening = crate::wait_until(Duration::from_secs(10), || {
            self.exec(server, &["ss", "-Hltn", "sport = :8000"])
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false)
        });
        ensure!(listening, "python3 http.server did not listen on {bind}");
        let url = format!("http://{bind}:8000/blob.bin");
        let dst_s = dst.to_string_lossy().into_owned();
        self.run(
            client,
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "60",
                "-o",
                &dst_s,
                &url,
            ],
        )?;
        let sums = self.run(client, &["sha256sum", &src.to_string_lossy(), &dst_s])?;
        let hashes: Vec<&str> = sums
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        ensure!(
            hashes.len() == 2 && hashes[0] == hashes[1],
            "sha256 mismatch after transfer:\n{sums}"
        );
        ensure!(std::fs::read(&dst)? == blob, "fetched file differs");
        Ok(())
    }

    /// Starts a long-running command in the node, stdout+stderr to
    /// `<lab dir>/<label>.log`. It is stopped when the returned [`Proc`] drops
    /// (and gets SIGTERM if the thread that spawned it dies).
    pub fn spawn<S: AsRef<OsStr>>(&self, node: &Node, label: &str, args: &[S]) -> Result<Proc> {
        self.spawn_env(node, label, &[], args)
    }

    /// [`Lab::spawn`] with extra environment variables.
    pub fn spawn_env<S: AsRef<OsStr>>(
        &self,
        node: &Node,
        label: &str,
        env: &[(&str, &str)],
        args: &[S],
    ) -> Result<Proc> {
        let mut cmd = Self::ns_command(&node.ns, args)?;
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log_name = {
            let mut st = self.inner.state();
            let mut name = format!("{label}.log");
            let mut i = 1;
            while st.log_names.contains(&name) {
                i += 1;
                name = format!("{label}.{i}.log");
            }
            st.log_names.push(name.clone());
            name
        };
        let log = self.dir().join(log_name);
        let f = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let f2 = f.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {label} in {}", node.name))?;
        Ok(Proc {
            child: Some(child),
            label: label.to_string(),
            log,
            _lab: Arc::clone(&self.inner),
        })
    }

    /// Runs `f` on a thread that has entered the node's network namespace (so
    /// sockets it opens live there). Bounded only by `f` itself. Same as
    /// [`Node::within`].
    pub fn in_netns<R: Send>(&self, node: &Node, f: impl FnOnce() -> R + Send) -> Result<R> {
        node.within(f)
    }

    /// UDP counters of the node's namespace (`/proc/net/snmp` "Udp:" line),
    /// e.g. `InErrors`, `RcvbufErrors`.
    pub fn udp_snmp(&self, node: &Node, field: &str) -> Result<u64> {
        let out = self.run(node, &["cat", "/proc/net/snmp"])?;
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("Udp:")).collect();
        if lines.len() < 2 {
            bail!("no Udp lines in /proc/net/snmp");
        }
        let names: Vec<&str> = lines[0].split_whitespace().collect();
        let vals: Vec<&str> = lines[1].split_whitespace().collect();
        let i = names
            .iter()
            .position(|n| *n == field)
            .with_context(|| format!("no Udp field {field}"))?;
        Ok(vals.get(i).context("short Udp line")?.parse()?)
    }
}

/// A process started by [`Lab::spawn`]; stopped on drop (SIGTERM, 5 s grace,
/// SIGKILL). Keeps the lab alive while it exists.
pub struct Proc {
    child: Option<Child>,
    label: String,
    log: PathBuf,
    _lab: Arc<Inner>,
}

impl Proc {
    /// PID (the command itself: `ip netns exec` execs in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Path of the stdout+stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Contents of the log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        let lines: Vec<&str> = l.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True while the process runs (not yet exited).
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Exit status if it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut st = None;
        crate::wait_until_every(timeout, Duration::from_millis(20), || {
            st = self.try_status();
            st.is_some()
        });
        st
    }

    /// Sends a signal (only while the child is unreaped, so the PID is ours).
    pub fn signal(&mut self, sig: libc::c_int) -> Result<()> {
        let Some(c) = self.child.as_mut() else {
            bail!("{} already stopped", self.label)
        };
        if c.try_wait()?.is_some() {
            bail!("{} already exited", self.label);
        }
        // SAFETY: plain kill(2) on our own unreaped child.
        if unsafe { libc::kill(c.id() as libc::pid_t, sig) } != 0 {
            bail!("kill {}: {}", c.id(), std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL; returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("{} already stopped", self.label)
        };
        if let Some(st) = c.try_wait()? {
            return Ok(st);
        }
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "testbed: {} (pid {}) ignored SIGTERM for {:?}, SIGKILL",
            self.label,
            c.id(),
            STOP_GRACE
        );
        let _ = c.kill();
        Ok(c.wait()?)
    }

    /// SIGKILL at once (a crash) and reap.
    pub fn kill_hard(&mut self) -> Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("{} already stopped", self.label)
        };
        let _ = c.kill();
        Ok(c.wait()?)
    }
}

/// Describes an exit status as "exit N" or "signal N".
pub fn describe_status(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("testbed: stopping {}: {e:#}", self.label);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- testbed: last lines of {} ({}) ----",
                self.label,
                self.log.display()
            );
            eprintln!("{}", self.log_tail(40));
            eprintln!("---- end of {} ----", self.label);
        }
    }
}

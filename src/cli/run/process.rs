//! Runs the task's process tree the way a Job's single container runs: in a process group of
//! its own, stdin from nothing (a pod has no stdin unless asked for), stdout and stderr
//! straight through. When the main process ends, whatever it left behind in its group is
//! killed (the container would stop). A deadline or an interrupt (Ctrl-C, SIGTERM) sends
//! SIGTERM to the group and, after a short grace period, SIGKILL.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a task may take to stop after SIGTERM before it gets SIGKILL. Kubernetes waits
/// 30 s; a terminal user should not have to.
const GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The main process exited with this code (128 + n when signal n killed it, as shells say).
    Exited(u8),
    /// The deadline passed; the group was killed.
    TimedOut,
    /// klt-render got this signal and passed it on; the group was stopped.
    Interrupted(i32),
}

/// Spawns `stages` as a pipeline (each stage's stdout feeds the next one's stdin; the first
/// reads nothing) and waits for the last, the main process, at most `timeout`.
pub fn run_pipeline(
    mut stages: Vec<Command>,
    timeout: Option<Duration>,
) -> std::io::Result<Outcome> {
    assert!(!stages.is_empty(), "a pipeline has at least one stage");
    sys::catch_interrupts();
    let last = stages.len() - 1;
    let mut children: Vec<Child> = Vec::new();
    let mut group: Option<u32> = None;
    for (i, cmd) in stages.iter_mut().enumerate() {
        let stdin = match children.last_mut().and_then(|c| c.stdout.take()) {
            Some(out) => Stdio::from(out),
            None => Stdio::null(),
        };
        cmd.stdin(stdin);
        if i < last {
            cmd.stdout(Stdio::piped());
        }
        sys::join_group(cmd, group);
        match cmd.spawn() {
            Ok(child) => {
                group.get_or_insert(child.id());
                children.push(child);
            }
            Err(e) => {
                if let Some(g) = group {
                    sys::signal_group(g, sys::SIGKILL);
                }
                for c in &mut children {
                    let _ = c.wait();
                }
                return Err(e);
            }
        }
    }
    let group = group.expect("at least one stage was spawned");
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut main = children.pop().expect("at least one child");

    let outcome = loop {
        if let Some(status) = main.try_wait()? {
            break Outcome::Exited(exit_code(status));
        }
        if let Some(sig) = sys::interrupted() {
            sys::signal_group(group, sig);
            stop(&mut main, group)?;
            break Outcome::Interrupted(sig);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            sys::signal_group(group, sys::SIGTERM);
            stop(&mut main, group)?;
            break Outcome::TimedOut;
        }
        std::thread::sleep(POLL);
    };
    // The container is gone once its main process is: so is everything else in it.
    sys::signal_group(group, sys::SIGKILL);
    for c in &mut children {
        let _ = c.wait();
    }
    Ok(outcome)
}

/// Waits up to [`GRACE`] for the main process after a first signal, then kills the group.
fn stop(main: &mut Child, group: u32) -> std::io::Result<()> {
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        if main.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    sys::signal_group(group, sys::SIGKILL);
    main.wait().map(|_| ())
}

fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    sys::signal_of(status).map_or(1, |s| (128 + s).clamp(0, 255) as u8)
}

#[cfg(unix)]
mod sys {
    //! The few POSIX calls std does not offer: kill(2) on a process group and signal(2) for
    //! SIGINT/SIGTERM. Signal numbers are the same on Linux and the BSDs/macOS.
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, ExitStatus};
    use std::sync::atomic::{AtomicI32, Ordering};

    pub const SIGINT: i32 = 2;
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;

    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
        fn signal(signum: i32, handler: usize) -> usize;
    }

    static RECEIVED: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(sig: i32) {
        // Only an atomic store: async-signal-safe.
        RECEIVED.store(sig, Ordering::SeqCst);
    }

    pub fn catch_interrupts() {
        let handler = on_signal as extern "C" fn(i32) as usize;
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe {
            signal(SIGINT, handler);
            signal(SIGTERM, handler);
        }
    }

    pub fn interrupted() -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// The first stage leads a new process group; later stages join it.
    pub fn join_group(cmd: &mut Command, group: Option<u32>) {
        cmd.process_group(group.map_or(0, |g| g as i32));
    }

    pub fn signal_group(group: u32, sig: i32) {
        if let Ok(pgid) = i32::try_from(group)
            && pgid > 1
        {
            // SAFETY: kill(2) with a negative pid signals exactly the group we created.
            unsafe {
                kill(-pgid, sig);
            }
        }
    }

    pub fn signal_of(status: ExitStatus) -> Option<i32> {
        status.signal()
    }
}

#[cfg(not(unix))]
mod sys {
    //! Without process groups: the main process alone is stopped.
    use std::process::{Command, ExitStatus};

    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;

    pub fn catch_interrupts() {}
    pub fn interrupted() -> Option<i32> {
        None
    }
    pub fn join_group(_cmd: &mut Command, _group: Option<u32>) {}
    pub fn signal_group(_group: u32, _sig: i32) {}
    pub fn signal_of(_status: ExitStatus) -> Option<i32> {
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(
            run_pipeline(vec![sh("exit 3")], None).unwrap(),
            Outcome::Exited(3)
        );
        assert_eq!(
            run_pipeline(vec![sh("true")], None).unwrap(),
            Outcome::Exited(0)
        );
        assert_eq!(
            run_pipeline(vec![sh("kill -9 $$")], None).unwrap(),
            Outcome::Exited(137)
        );
    }

    #[test]
    fn the_deadline_kills_the_whole_group() {
        let start = Instant::now();
        let out = run_pipeline(
            vec![sh("sleep 30 & sleep 30")],
            Some(Duration::from_millis(200)),
        )
        .unwrap();
        assert_eq!(out, Outcome::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_pipeline_feeds_the_last_stage() {
        let out = run_pipeline(
            vec![sh("printf 'exit 7'"), sh("sh -s")],
            Some(Duration::from_secs(20)),
        )
        .unwrap();
        assert_eq!(out, Outcome::Exited(7));
    }
}

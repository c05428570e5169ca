//! The runtime images' process, shared by both ways `klt-render run` starts a task (from a
//! task definition, and from a resolved pod with `--pod`): finding deno or python3, the
//! entrypoint's command line(s), a private temporary HOME, and running them through
//! [`process`](super::process) with exactly the env it is given.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use klt_render::model::Lang;

use super::{prepare, process};

/// Exit status of a task that ran out of time (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;

/// The program that runs `lang`: deno or python3, by explicit path or on PATH.
pub fn program_for(
    lang: Lang,
    deno: Option<&Path>,
    python: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    match lang {
        Lang::Deno => find_program(deno, "deno", "--deno", "KLT_DENO"),
        Lang::Python => find_program(python, "python3", "--python", "KLT_PYTHON"),
    }
}

/// The caller's PATH (programs the task spawns are found as on this machine).
pub fn caller_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    })
}

/// Runs the entrypoint's stages with exactly `env`, in `home`; `timeout` kills it.
pub fn spawn(
    stages: Vec<Vec<String>>,
    env: &[(String, OsString)],
    home: &Path,
    timeout: Option<Duration>,
) -> anyhow::Result<process::Outcome> {
    let program = stages[0][0].clone();
    let stages: Vec<Process> = stages
        .into_iter()
        .map(|words| {
            let mut p = Process::new(&words[0]);
            p.args(&words[1..]).env_clear().current_dir(home);
            for (k, v) in env {
                p.env(k, v);
            }
            p
        })
        .collect();
    process::run_pipeline(stages, timeout).with_context(|| format!("{program}: cannot run"))
}

/// The exit status for an outcome: the task's, 128+n after signal n; a timeout is
/// reported by the caller, which knows what ran out of time.
pub fn exit_code(outcome: &process::Outcome) -> ExitCode {
    match outcome {
        process::Outcome::Exited(code) => ExitCode::from(*code),
        process::Outcome::TimedOut => ExitCode::from(EXIT_TIMEOUT),
        process::Outcome::Interrupted(sig) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
    }
}

/// The runtime image's command line(s); a python URL becomes `fetch | python3 ... -` as the
/// entrypoint's `curl -s $SCRIPT | python3 $CMD_ARGS -`.
pub fn command_lines(
    lang: Lang,
    program: &Path,
    profile: &klt_render::Profile,
    cmd_args: &str,
    script: &str,
) -> Vec<Vec<String>> {
    let program = program.display().to_string();
    match lang {
        Lang::Deno => {
            let mut words = vec![program, "run".into()];
            words.extend(prepare::deno_flags(profile));
            words.push(script.into());
            vec![words]
        }
        Lang::Python => {
            let mut words = vec![program.clone()];
            words.extend(prepare::split_cmd_args(cmd_args));
            if prepare::python_sees_url(script) {
                words.push("-".into());
                vec![
                    vec![program, "-c".into(), FETCH.into(), script.into()],
                    words,
                ]
            } else {
                words.push(script.into());
                vec![words]
            }
        }
    }
}

/// What `curl -s URL` does for python-runtime: the body of any response (no redirects
/// followed), nothing on a network error. klt-render says why on stderr.
const FETCH: &str = r#"import sys, urllib.request, urllib.error
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    sys.stdout.buffer.write(urllib.request.build_opener(Stay).open(sys.argv[1]).read())
except urllib.error.HTTPError as e:
    sys.stdout.buffer.write(e.read())
except Exception as e:
    sys.stderr.write("klt-render run: cannot fetch %s: %s\n" % (sys.argv[1], e))
"#;

/// A program by explicit path, or by name on PATH.
fn find_program(
    explicit: Option<&Path>,
    name: &str,
    flag: &str,
    env: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.components().count() > 1 {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            bail!("{flag} {}: no such file", p.display());
        }
        return search_path(&p.to_string_lossy())
            .with_context(|| format!("{flag} {}: not found on PATH", p.display()));
    }
    search_path(name).with_context(|| {
        let install = if name == "deno" {
            " (e.g. `pip install deno`, which puts it into the environment's bin directory)"
        } else {
            ""
        };
        format!("{name} not found on PATH; install it{install} or pass {flag} PATH (or set {env})")
    })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// A private temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "klt-render-run-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot create", path.display()));
                }
            }
        }
        bail!("cannot create a temporary directory in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

//! The pure parts of `klt-render run`: the task context, `--param` overrides of DATA, the
//! environment of the process, the runtime images' command lines. No I/O here.

use std::collections::BTreeMap;
use std::ffi::OsString;

use klt_render::model::TaskContext;
use klt_render::options::Profile;
use klt_render::workload::resource_name;
use serde_json::Value;

/// `--phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }
}

/// `--object-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    App,
    Workload,
}

impl ObjectType {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "App" | "Application" => Ok(ObjectType::App),
            "Workload" => Ok(ObjectType::Workload),
            other => Err(format!(
                "unknown object type {other:?}; use App or Workload"
            )),
        }
    }

    /// The `objectType` Keptn writes: app tasks are "Application" before Keptn 2.
    pub fn keptn_value(self, profile: &Profile) -> &'static str {
        match self {
            ObjectType::App => profile.app_object_type,
            ObjectType::Workload => "Workload",
        }
    }
}

/// What the command line says about the context.
#[derive(Clone, Debug, Default)]
pub struct ContextArgs {
    pub app: Option<String>,
    pub app_version: Option<String>,
    pub workload: Option<String>,
    pub workload_version: Option<String>,
    pub phase: Option<Phase>,
    pub object_type: Option<ObjectType>,
}

impl ContextArgs {
    /// The taskType: `--phase`, else the one fitting use's, else `pre`.
    pub fn task_type(&self, base: Option<&TaskContext>) -> String {
        match (self.phase, base) {
            (Some(p), _) => p.as_str().into(),
            (None, Some(b)) if !b.task_type.is_empty() => b.task_type.clone(),
            (None, _) => Phase::Pre.as_str().into(),
        }
    }

    /// Whether a context Keptn would give a real use of the task fits these options.
    pub fn matches(&self, ctx: &TaskContext, profile: &Profile) -> bool {
        let app_ok = self
            .app
            .as_ref()
            .is_none_or(|a| ctx.app_name == *a || ctx.app_name == resource_name(a));
        let workload_ok = self.workload.as_ref().is_none_or(|w| {
            !ctx.workload_name.is_empty()
                && ctx.workload_name == resource_name(&format!("{}-{w}", ctx.app_name))
        });
        let type_ok = self
            .object_type
            .is_none_or(|t| ctx.object_type == t.keptn_value(profile));
        let phase_ok = self.phase.is_none_or(|p| ctx.task_type == p.as_str());
        phase_ok && app_ok && workload_ok && type_ok
    }
}

/// The context of the run: Keptn's for the options, starting from `base` (the context of the
/// real use of the task that the options select, if there is exactly one).
pub fn build_context(
    base: Option<&TaskContext>,
    args: &ContextArgs,
    profile: &Profile,
) -> Result<TaskContext, String> {
    let base_is_workload = base.is_some_and(|b| !b.workload_name.is_empty());
    let object = args
        .object_type
        .or(args.workload.as_ref().map(|_| ObjectType::Workload))
        .or(base.map(|_| {
            if base_is_workload {
                ObjectType::Workload
            } else {
                ObjectType::App
            }
        }))
        .unwrap_or(ObjectType::App);
    let base_app = base.map(|b| b.app_name.clone()).unwrap_or_default();
    let app = args.app.clone().unwrap_or(base_app);
    let mut ctx = TaskContext {
        app_name: app.clone(),
        task_type: args.task_type(base),
        object_type: object.keptn_value(profile).into(),
        metadata: base.map(|b| b.metadata.clone()).unwrap_or_default(),
        ..Default::default()
    };
    match object {
        ObjectType::Workload => {
            if args.app_version.is_some() {
                return Err("--app-version is for app tasks: Keptn gives workload tasks an empty appVersion; use --workload-version".into());
            }
            if app.is_empty() {
                return Err("a workload task needs --app (the app the workload belongs to)".into());
            }
            ctx.workload_name = match &args.workload {
                Some(w) => resource_name(&format!("{app}-{w}")),
                None if base_is_workload => {
                    base.map(|b| b.workload_name.clone()).unwrap_or_default()
                }
                None => return Err("--object-type Workload needs --workload".into()),
            };
            ctx.workload_version = args
                .workload_version
                .clone()
                .or_else(|| {
                    base.filter(|_| base_is_workload)
                        .map(|b| b.workload_version.clone())
                })
                .unwrap_or_default();
        }
        ObjectType::App => {
            if args.workload.is_some() || args.workload_version.is_some() {
                return Err("--workload and --workload-version are for workload tasks, not with --object-type App".into());
            }
            ctx.app_version = args
                .app_version
                .clone()
                .or_else(|| {
                    base.filter(|_| !base_is_workload)
                        .map(|b| b.app_version.clone())
                })
                .unwrap_or_default();
        }
    }
    Ok(ctx)
}

/// Reads a context back from the JSON Keptn puts into KEPTN_CONTEXT / CONTEXT.
pub fn context_from_json(text: &str) -> Option<TaskContext> {
    let v: Value = serde_json::from_str(text).ok()?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let metadata = v
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            std::rc::Rc::new(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect(),
            )
        })
        .unwrap_or_default();
    Some(TaskContext {
        workload_name: s("workloadName"),
        app_name: s("appName"),
        app_version: s("appVersion"),
        workload_version: s("workloadVersion"),
        task_type: s("taskType"),
        object_type: s("objectType"),
        metadata,
    })
}

/// `--param key=value`.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("--param {s:?}: write key=value")),
    }
}

/// DATA with `params` set (later ones win), re-encoded as Go encodes a `map[string]string`.
/// `None` when there was no DATA and there are no params: Keptn leaves DATA out then.
pub fn override_data(
    data: Option<&str>,
    params: &[(String, String)],
) -> Result<Option<String>, String> {
    if params.is_empty() {
        return Ok(data.map(str::to_string));
    }
    let mut map: BTreeMap<String, String> = match data {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            format!("DATA of the rendered Job is not a JSON object of strings: {e}")
        })?,
        None => BTreeMap::new(),
    };
    for (k, v) in params {
        map.insert(k.clone(), v.clone());
    }
    Ok(Some(klt_render::gojson::string_map(&map)))
}

/// `$CMD_ARGS` unquoted in busybox sh: split on IFS (space, tab, newline), empty fields
/// dropped. (The shell would also expand globs; nothing here does.)
pub fn split_cmd_args(s: &str) -> Vec<String> {
    s.split([' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The deno-runtime entrypoint's flags: deno-runtime v2+ (Keptn with KEPTN_CONTEXT) may also
/// read and write files; v1.x (KLT 0.8/0.9, CONTEXT) may not.
pub fn deno_flags(profile: &Profile) -> Vec<String> {
    let env = format!("--allow-env=DATA,SECURE_DATA,{}", profile.context_env);
    if profile.context_env == "KEPTN_CONTEXT" {
        vec![
            "--allow-net".into(),
            "--allow-write".into(),
            "--allow-read".into(),
            env,
        ]
    } else {
        vec!["--allow-net".into(), env]
    }
}

/// Whether python-runtime's entrypoint takes SCRIPT for a URL: its busybox regex
/// `(https?|ftp|file)://[-[:alnum:]\+&@#/%?=~_|!:,.;]*[-[:alnum:]\+&@#/%=~_|]`, unanchored.
pub fn python_sees_url(script: &str) -> bool {
    let body = |c: char| c.is_ascii_alphanumeric() || "-+&@#/%?=~_|!:,.;".contains(c);
    let last = |c: char| c.is_ascii_alphanumeric() || "-+&@#/%=~_|".contains(c);
    for scheme in ["http://", "https://", "ftp://", "file://"] {
        for (i, _) in script.match_indices(scheme) {
            let rest = &script[i + scheme.len()..];
            let run: Vec<char> = rest.chars().take_while(|c| body(*c)).collect();
            if run.iter().any(|c| last(*c)) {
                return true;
            }
        }
    }
    false
}

/// `--timeout`: a Go duration (`90s`, `5m`, `1h30m`) or whole seconds; 0 means none.
pub fn parse_timeout(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    let secs = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().ok()
    } else {
        klt_render::model::go_duration_seconds(t).and_then(|n| u64::try_from(n).ok())
    };
    match secs {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err(format!(
            "--timeout {s:?} is not a duration; write e.g. 30s, 5m or 1h (0: no timeout)"
        )),
    }
}

/// One env entry of the rendered container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    Value(String),
    /// `valueFrom.secretKeyRef`: Secret name and key.
    Secret(String, String),
    /// Any other `valueFrom` (a container runner's own env).
    Other,
}

pub fn container_env(container: &Value) -> Vec<(String, EnvSource)> {
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let src = if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            EnvSource::Secret(
                r["name"].as_str().unwrap_or_default().into(),
                r["key"].as_str().unwrap_or_default().into(),
            )
        } else if e.get("valueFrom").is_some() {
            EnvSource::Other
        } else {
            EnvSource::Value(e["value"].as_str().unwrap_or_default().into())
        };
        out.push((name.to_string(), src));
    }
    out
}

/// The process environment: the Job's env in the Job's order (DATA with the overrides,
/// SECURE_DATA's value, SCRIPT pointing at the local copy), then PATH and HOME. Nothing else.
pub fn assemble_env(
    job_env: &[(String, EnvSource)],
    params: &[(String, String)],
    secure: Option<&[u8]>,
    script: &str,
    path: OsString,
    home: OsString,
) -> Result<Vec<(String, OsString)>, String> {
    let data = job_env.iter().find_map(|(n, s)| match s {
        EnvSource::Value(v) if n == "DATA" => Some(v.as_str()),
        _ => None,
    });
    let new_data = override_data(data, params)?;
    let mut env: Vec<(String, OsString)> = Vec::new();
    if data.is_none()
        && let Some(d) = &new_data
    {
        env.push(("DATA".into(), d.into()));
    }
    for (name, src) in job_env {
        let value: OsString = match (name.as_str(), src) {
            ("DATA", _) => new_data.clone().unwrap_or_default().into(),
            ("SCRIPT", _) => script.into(),
            (_, EnvSource::Value(v)) => v.into(),
            (_, EnvSource::Secret(secret, _)) => match secure {
                Some(bytes) => os_string(bytes.to_vec())?,
                None => return Err(format!("{name} needs the value of Secret {secret:?}")),
            },
            (_, EnvSource::Other) => {
                return Err(format!(
                    "{name} comes from a valueFrom that only a cluster can resolve"
                ));
            }
        };
        env.push((name.clone(), value));
    }
    env.push(("PATH".into(), path));
    env.push(("HOME".into(), home));
    Ok(env)
}

#[cfg(unix)]
pub fn os_string(bytes: Vec<u8>) -> Result<OsString, String> {
    use std::os::unix::ffi::OsStringExt;
    if bytes.contains(&0) {
        return Err("a NUL byte cannot be part of an environment variable".into());
    }
    Ok(OsString::from_vec(bytes))
}

#[cfg(not(unix))]
pub fn os_string(bytes: Vec<u8>) -> Result<OsString, String> {
    String::from_utf8(bytes)
        .map(OsString::from)
        .map_err(|_| "the value is not UTF-8".to_string())
}

/// Standard base64 as Kubernetes writes Secret data (line breaks and spaces tolerated).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err("not base64".into()),
        };
        if padding > 0 {
            return Err("not base64 (data after padding)".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 || padding > 2 {
        return Err("not base64 (bad length)".into());
    }
    Ok(out)
}

/// Quotes a word for a POSIX shell (for suggestions the user may paste).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use klt_render::options::{KEPTN_2, KLT_0_9};

    fn args() -> ContextArgs {
        ContextArgs::default()
    }

    #[test]
    fn params_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_param("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_param("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_param("a").is_err());
        assert!(parse_param("=b").is_err());
    }

    #[test]
    fn data_overrides_are_go_encoded_and_sorted() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            override_data(Some(r#"{"b":"1","a":"x"}"#), &[p("b", "<2>"), p("c", "&")])
                .unwrap()
                .unwrap(),
            r#"{"a":"x","b":"\u003c2\u003e","c":"\u0026"}"#
        );
        // Without params the rendered bytes are kept as they are.
        assert_eq!(
            override_data(Some(r#"{"z":"1"}"#), &[]).unwrap().unwrap(),
            r#"{"z":"1"}"#
        );
        assert_eq!(override_data(None, &[]).unwrap(), None);
        assert_eq!(
            override_data(None, &[p("k", "v"), p("k", "w")])
                .unwrap()
                .unwrap(),
            r#"{"k":"w"}"#
        );
        assert!(override_data(Some("[1]"), &[p("k", "v")]).is_err());
    }

    #[test]
    fn cmd_args_split_like_busybox_sh() {
        assert_eq!(split_cmd_args(""), Vec::<String>::new());
        assert_eq!(split_cmd_args("  -O\t-W  error\n"), ["-O", "-W", "error"]);
        assert_eq!(split_cmd_args("-c 'print(1)'"), ["-c", "'print(1)'"]);
    }

    #[test]
    fn deno_flags_follow_the_profile() {
        assert_eq!(
            deno_flags(&KEPTN_2).join(" "),
            "--allow-net --allow-write --allow-read --allow-env=DATA,SECURE_DATA,KEPTN_CONTEXT"
        );
        assert_eq!(
            deno_flags(&KLT_0_9).join(" "),
            "--allow-net --allow-env=DATA,SECURE_DATA,CONTEXT"
        );
    }

    #[test]
    fn app_and_workload_contexts_look_like_keptns() {
        let mut a = args();
        a.app = Some("Shop_X".into());
        a.workload = Some("api".into());
        a.workload_version = Some("1.2".into());
        let c = build_context(None, &a, &KEPTN_2).unwrap();
        assert_eq!(
            c.to_json(true),
            r#"{"workloadName":"shop-x-api","appName":"Shop_X","appVersion":"","workloadVersion":"1.2","taskType":"pre","objectType":"Workload"}"#
        );
        let mut a = args();
        a.app = Some("shop".into());
        a.app_version = Some("2.0".into());
        a.phase = Some(Phase::Post);
        assert_eq!(
            build_context(None, &a, &KLT_0_9).unwrap().to_json(false),
            r#"{"workloadName":"","appName":"shop","appVersion":"2.0","workloadVersion":"","taskType":"post","objectType":"Application"}"#
        );
        assert_eq!(
            build_context(None, &args(), &KEPTN_2).unwrap().object_type,
            "App"
        );
    }

    #[test]
    fn contradictory_context_options_are_refused() {
        let mut a = args();
        a.workload = Some("api".into());
        assert!(
            build_context(None, &a, &KEPTN_2)
                .unwrap_err()
                .contains("--app")
        );
        a.app = Some("shop".into());
        a.app_version = Some("1".into());
        assert!(build_context(None, &a, &KEPTN_2).is_err());
        let mut a = args();
        a.object_type = Some(ObjectType::App);
        a.workload = Some("api".into());
        assert!(build_context(None, &a, &KEPTN_2).is_err());
        let mut a = args();
        a.object_type = Some(ObjectType::Workload);
        a.app = Some("shop".into());
        assert!(
            build_context(None, &a, &KEPTN_2)
                .unwrap_err()
                .contains("--workload")
        );
    }

    #[test]
    fn a_discovered_context_fills_what_the_options_leave_open() {
        let base = context_from_json(
            r#"{"workloadName":"shop-api","appName":"shop","appVersion":"","workloadVersion":"1.0","taskType":"pre","objectType":"Workload","metadata":{"stage":"dev"}}"#,
        )
        .unwrap();
        let mut a = args();
        a.workload = Some("api".into());
        assert!(a.matches(&base, &KEPTN_2));
        a.workload_version = Some("1.1".into());
        let c = build_context(Some(&base), &a, &KEPTN_2).unwrap();
        assert_eq!(
            c.to_json(true),
            r#"{"workloadName":"shop-api","appName":"shop","appVersion":"","workloadVersion":"1.1","taskType":"pre","objectType":"Workload","metadata":{"stage":"dev"}}"#
        );
        a.phase = Some(Phase::Post);
        assert!(!a.matches(&base, &KEPTN_2));
        let mut a = args();
        a.app = Some("other".into());
        assert!(!a.matches(&base, &KEPTN_2));
        a.app = Some("shop".into());
        a.object_type = Some(ObjectType::App);
        assert!(!a.matches(&base, &KEPTN_2));
    }

    #[test]
    fn the_environment_is_the_jobs_and_nothing_else() {
        let job = serde_json::json!({"env": [
            {"name": "DATA", "value": "{\"a\":\"1\"}"},
            {"name": "KEPTN_CONTEXT", "value": "{}"},
            {"name": "CMD_ARGS"},
            {"name": "SECURE_DATA", "valueFrom": {"secretKeyRef": {"name": "s", "key": "SECURE_DATA"}}},
            {"name": "SCRIPT", "value": "/var/data/function.ts"},
        ]});
        let env = container_env(&job);
        assert_eq!(
            env[3].1,
            EnvSource::Secret("s".into(), "SECURE_DATA".into())
        );
        let out = assemble_env(
            &env,
            &[("b".into(), "2".into())],
            Some(b"top secret\n"),
            "/tmp/x/function.ts",
            "/usr/bin".into(),
            "/tmp/x/home".into(),
        )
        .unwrap();
        let pairs: Vec<(String, String)> = out
            .into_iter()
            .map(|(k, v)| (k, v.into_string().unwrap()))
            .collect();
        let expected = [
            ("DATA", r#"{"a":"1","b":"2"}"#),
            ("KEPTN_CONTEXT", "{}"),
            ("CMD_ARGS", ""),
            ("SECURE_DATA", "top secret\n"),
            ("SCRIPT", "/tmp/x/function.ts"),
            ("PATH", "/usr/bin"),
            ("HOME", "/tmp/x/home"),
        ];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        // Without DATA in the Job, a --param creates it first, as Keptn orders it.
        let out = assemble_env(
            &env[1..3],
            &[("k".into(), "v".into())],
            None,
            "s",
            "p".into(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(out[0], ("DATA".to_string(), OsString::from(r#"{"k":"v"}"#)));
        assert!(assemble_env(&env, &[], None, "s", "p".into(), "h".into()).is_err());
    }

    #[test]
    fn urls_as_the_python_entrypoint_sees_them() {
        assert!(python_sees_url("https://example.com/task.py"));
        assert!(python_sees_url("file:///tmp/x.py"));
        assert!(!python_sees_url("/var/data/function.py"));
        assert!(!python_sees_url("https://"));
        assert!(!python_sees_url("example.com/task.py"));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2s"), Ok(Some(2)));
        assert_eq!(parse_timeout("1m30s"), Ok(Some(90)));
        assert_eq!(parse_timeout("45"), Ok(Some(45)));
        assert_eq!(parse_timeout("0"), Ok(None));
        assert!(parse_timeout("-1s").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn base64_as_kubernetes_writes_it() {
        assert_eq!(base64_decode("YmFyCg==").unwrap(), b"bar\n");
        assert_eq!(base64_decode("Zm9v\nYmE=").unwrap(), b"fooba");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("{\"a\":\"it's\"}"), r#"'{"a":"it'\''s"}'"#);
    }
}

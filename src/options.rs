//! Render options and the compatibility profiles of the Keptn releases we replace.

use std::fmt;
use std::str::FromStr;

use crate::limits::{Limit, Limits, parse_amount};

/// How generated Jobs are ordered for Argo CD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Normal resources with sync waves around the app's own waves: run once per content hash.
    #[default]
    Waves,
    /// PreSync/PostSync hooks: run on every sync, deleted by an explicit policy.
    Hooks,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "waves" => Ok(Mode::Waves),
            "hooks" => Ok(Mode::Hooks),
            other => Err(format!(
                "unknown mode {other:?}; use \"waves\" or \"hooks\""
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Waves => "waves",
            Mode::Hooks => "hooks",
        })
    }
}

/// What a Keptn release put into task Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// Env var that carries the task context.
    pub context_env: &'static str,
    pub deno_image: &'static str,
    pub python_image: &'static str,
    /// `objectType` of app-level tasks.
    pub app_object_type: &'static str,
    /// `context.metadata` (AppContext metadata and `keptn.sh/metadata`) exists.
    pub context_metadata: bool,
    /// Container runners get the context env var.
    pub container_context: bool,
    /// ttlSecondsAfterFinished, serviceAccount, automountServiceAccountToken, imagePullSecrets.
    pub pod_settings: bool,
}

/// Keptn 2.x (lifecycle-operator v2.0.0 .. keptn-v2.5.0).
pub const KEPTN_2: Profile = Profile {
    name: "keptn-2",
    context_env: "KEPTN_CONTEXT",
    deno_image: "ghcr.io/keptn/deno-runtime:v3.0.1",
    python_image: "ghcr.io/keptn/python-runtime:v1.0.8",
    app_object_type: "App",
    context_metadata: true,
    container_context: true,
    pod_settings: true,
};

/// Keptn Lifecycle Toolkit 0.9.0, whose tasks read `CONTEXT`.
pub const KLT_0_9: Profile = Profile {
    name: "klt-0.9",
    context_env: "CONTEXT",
    deno_image: "ghcr.io/keptn/deno-runtime:v1.0.2",
    python_image: "ghcr.io/keptn/python-runtime:v1.0.1",
    app_object_type: "Application",
    context_metadata: false,
    container_context: false,
    pod_settings: false,
};

/// Keptn Lifecycle Toolkit 0.8.3.
pub const KLT_0_8: Profile = Profile {
    name: "klt-0.8",
    deno_image: "ghcr.io/keptn/deno-runtime:v1.0.1",
    python_image: "ghcr.io/keptn/python-runtime:v1.0.0",
    ..KLT_0_9
};

pub const PROFILES: &[&Profile] = &[&KEPTN_2, &KLT_0_9, &KLT_0_8];

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PROFILES
            .iter()
            .find(|p| p.name == s)
            .map(|p| (*p).clone())
            .ok_or_else(|| {
                let names: Vec<_> = PROFILES.iter().map(|p| p.name).collect();
                format!("unknown profile {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// One render option as every adapter sees it: a CLI flag `--<name>`, an environment
/// variable, an Argo CD plugin parameter `<name>` and a KRM functionConfig field. This table
/// is the single source of names, defaults and help texts; plugin.yaml's announcements are
/// checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: &'static str,
    pub env: &'static str,
    /// Default as text (`""` = unset).
    pub default: &'static str,
    pub flag: bool,
    pub help: &'static str,
}

pub const SPECS: &[OptionSpec] = &[
    OptionSpec {
        name: "namespace",
        env: "KLT_NAMESPACE",
        default: "",
        flag: false,
        help: "Namespace of objects without metadata.namespace (Argo CD's destination namespace); lookups follow it",
    },
    OptionSpec {
        name: "mode",
        env: "KLT_MODE",
        default: "waves",
        flag: false,
        help: "waves: Jobs run once per content hash, ordered by sync waves; hooks: PreSync/PostSync hook Jobs",
    },
    OptionSpec {
        name: "profile",
        env: "KLT_PROFILE",
        default: "keptn-2",
        flag: false,
        help: "Keptn release whose Jobs to reproduce: keptn-2, klt-0.9 or klt-0.8",
    },
    OptionSpec {
        name: "deno-image",
        env: "KLT_DENO_IMAGE",
        default: "",
        flag: false,
        help: "Image of deno tasks (default: the profile's deno-runtime)",
    },
    OptionSpec {
        name: "python-image",
        env: "KLT_PYTHON_IMAGE",
        default: "",
        flag: false,
        help: "Image of python tasks (default: the profile's python-runtime)",
    },
    OptionSpec {
        name: "evaluator-image",
        env: "KLT_EVALUATOR_IMAGE",
        default: "ghcr.io/klt-render/klt-evaluate:0.1.0",
        flag: false,
        help: "Image of evaluation Jobs (klt-evaluate)",
    },
    OptionSpec {
        name: "task-order",
        env: "KLT_TASK_ORDER",
        default: "parallel",
        flag: false,
        help: "parallel: the tasks of a phase run together (Keptn); sequential: one after another in list order, each in its own wave (per object: annotation klt-render.dev/task-order)",
    },
    OptionSpec {
        name: "definition-namespace",
        env: "KLT_DEFINITION_NAMESPACE",
        default: "",
        flag: false,
        help: "Namespace searched for task definitions missing from the task's namespace (Keptn's operator namespace)",
    },
    OptionSpec {
        name: "keep-keptn",
        env: "KLT_KEEP_KEPTN",
        default: "false",
        flag: true,
        help: "Also emit the consumed Keptn resources",
    },
    OptionSpec {
        name: "records",
        env: "KLT_RECORDS",
        default: "false",
        flag: true,
        help: "Also emit a TaskRecord (klt-render.dev/v1alpha1) per app version, in the last sync wave, for klt-reconciler to fill in; needs mode waves and the CRD",
    },
    OptionSpec {
        name: "hook-delete-policy",
        env: "KLT_HOOK_DELETE_POLICY",
        default: "BeforeHookCreation",
        flag: false,
        help: "argocd.argoproj.io/hook-delete-policy of task Jobs in hooks mode",
    },
    OptionSpec {
        name: "max-input-bytes",
        env: "KLT_MAX_INPUT_BYTES",
        default: "256Mi",
        flag: false,
        help: "Limit: all input files together (a size such as 256Mi)",
    },
    OptionSpec {
        name: "max-document-bytes",
        env: "KLT_MAX_DOCUMENT_BYTES",
        default: "8Mi",
        flag: false,
        help: "Limit: one YAML document (the API server takes at most 3 MiB per object)",
    },
    OptionSpec {
        name: "max-documents",
        env: "KLT_MAX_DOCUMENTS",
        default: "1000000",
        flag: false,
        help: "Limit: YAML documents in the whole input, empty ones included",
    },
    OptionSpec {
        name: "max-depth",
        env: "KLT_MAX_DEPTH",
        default: "256",
        flag: false,
        help: "Limit: nesting of lists and maps, aliases expanded (at most 1024)",
    },
    OptionSpec {
        name: "alias-nodes-per-byte",
        env: "KLT_ALIAS_NODES_PER_BYTE",
        default: "4",
        flag: false,
        help: "Limit: nodes YAML aliases and merge keys may add to a document, per byte of it",
    },
    OptionSpec {
        name: "max-alias-nodes",
        env: "KLT_MAX_ALIAS_NODES",
        default: "1000000",
        flag: false,
        help: "Limit: nodes YAML aliases and merge keys may add to the whole input",
    },
    OptionSpec {
        name: "max-dir-depth",
        env: "KLT_MAX_DIR_DEPTH",
        default: "64",
        flag: false,
        help: "Limit: directory levels below each input directory",
    },
];

/// Why a setting could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("option {name}: {message}")]
pub struct OptionError {
    pub name: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Destination namespace of objects without `metadata.namespace` (Argo CD's
    /// `spec.destination.namespace`). Generated objects keep the namespace of their source:
    /// explicit when it was explicit, left to the destination otherwise.
    pub namespace: Option<String>,
    pub mode: Mode,
    /// `argocd.argoproj.io/hook-delete-policy` in hooks mode.
    pub hook_delete_policy: String,
    pub profile: Profile,
    pub deno_image: Option<String>,
    pub python_image: Option<String>,
    /// Emit the consumed Keptn resources too.
    pub keep_keptn: bool,
    /// Emit a TaskRecord per app version.
    pub records: bool,
    /// Where definitions are looked up when the task's namespace lacks them (Keptn's
    /// operator-namespace fallback).
    pub definition_namespace: Option<String>,
    /// Bounds on input size and parsing work.
    pub limits: Limits,
    /// Image of evaluation Jobs.
    pub evaluator_image: String,
    /// Run the tasks of a phase one after another (objects may override it).
    pub sequential: bool,
}

/// The image evaluation Jobs run by default.
pub const EVALUATOR_IMAGE: &str = "ghcr.io/klt-render/klt-evaluate:0.1.0";

/// Parses a task order: `sequential` is `true`, `parallel` `false`.
pub fn parse_task_order(raw: &str) -> Result<bool, String> {
    match raw {
        "sequential" => Ok(true),
        "parallel" => Ok(false),
        other => Err(format!(
            "unknown task order {other:?}; use \"parallel\" or \"sequential\""
        )),
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            mode: Mode::Waves,
            hook_delete_policy: "BeforeHookCreation".into(),
            profile: KEPTN_2,
            deno_image: None,
            python_image: None,
            keep_keptn: false,
            records: false,
            definition_namespace: None,
            limits: Limits::default(),
            evaluator_image: EVALUATOR_IMAGE.into(),
            sequential: false,
        }
    }
}

impl Options {
    pub fn evaluator_image(&self) -> &str {
        &self.evaluator_image
    }
    pub fn deno_image(&self) -> &str {
        self.deno_image
            .as_deref()
            .unwrap_or(self.profile.deno_image)
    }
    pub fn python_image(&self) -> &str {
        self.python_image
            .as_deref()
            .unwrap_or(self.profile.python_image)
    }
}

impl Options {
    /// Builds options from settings looked up by option name; unset or empty settings take
    /// the table's defaults.
    pub fn from_settings(get: &dyn Fn(&str) -> Option<String>) -> Result<Options, OptionError> {
        let value = |spec: &OptionSpec| get(spec.name).filter(|v| !v.trim().is_empty());
        let mut o = Options::default();
        for spec in SPECS {
            let raw = value(spec).unwrap_or_else(|| spec.default.to_string());
            let raw = raw.trim().to_string();
            let err = |message: String| OptionError {
                name: spec.name,
                message,
            };
            let opt = |s: String| (!s.is_empty()).then_some(s);
            if let Some(limit) = Limit::from_option(spec.name) {
                let n = parse_amount(&raw).map_err(err)?;
                limit.set(&mut o.limits, n).map_err(err)?;
                continue;
            }
            match spec.name {
                "namespace" => o.namespace = opt(raw),
                "mode" => o.mode = raw.parse().map_err(err)?,
                "profile" => o.profile = raw.parse().map_err(err)?,
                "deno-image" => o.deno_image = opt(raw),
                "python-image" => o.python_image = opt(raw),
                "definition-namespace" => o.definition_namespace = opt(raw),
                "evaluator-image" => o.evaluator_image = raw,
                "task-order" => o.sequential = parse_task_order(&raw).map_err(err)?,
                "keep-keptn" => o.keep_keptn = parse_bool(&raw).map_err(err)?,
                "records" => o.records = parse_bool(&raw).map_err(err)?,
                "hook-delete-policy" => {
                    for p in raw.split(',') {
                        if !["BeforeHookCreation", "HookSucceeded", "HookFailed"]
                            .contains(&p.trim())
                        {
                            return Err(err(format!(
                                "{p:?} is not BeforeHookCreation, HookSucceeded or HookFailed"
                            )));
                        }
                    }
                    o.hook_delete_policy = raw;
                }
                other => unreachable!("option {other} has no setter"),
            }
        }
        if o.records && o.mode == Mode::Hooks {
            return Err(OptionError {
                name: "records",
                message: "needs mode waves: in hooks mode a record that waits for its PostSync tasks would hold them back".into(),
            });
        }
        Ok(o)
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_the_table_equal_default_options() {
        assert_eq!(
            Options::from_settings(&|_| None).unwrap(),
            Options::default()
        );
    }

    #[test]
    fn every_limit_is_an_option_of_the_table() {
        for limit in Limit::ALL {
            assert!(SPECS.iter().any(|s| s.name == limit.option()), "{limit}");
        }
        let o = Options::from_settings(&|n| (n == "max-depth").then(|| "2000".into()));
        assert!(o.unwrap_err().message.contains("ceiling of 1024"));
        let o = Options::from_settings(&|n| (n == "max-input-bytes").then(|| "1Ki".into()));
        assert_eq!(o.unwrap().limits.max_input_bytes, 1024);
    }

    #[test]
    fn settings_are_parsed_and_checked() {
        let o = Options::from_settings(&|n| match n {
            "mode" => Some("hooks".into()),
            "profile" => Some("klt-0.9".into()),
            "keep-keptn" => Some("true".into()),
            "namespace" => Some(" ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(o.mode, Mode::Hooks);
        assert_eq!(o.profile.name, "klt-0.9");
        assert!(o.keep_keptn);
        assert_eq!(o.namespace, None);
        let e = Options::from_settings(&|n| (n == "mode").then(|| "wavs".into())).unwrap_err();
        assert_eq!(e.name, "mode");
        let e = Options::from_settings(&|n| (n == "hook-delete-policy").then(|| "Never".into()))
            .unwrap_err();
        assert!(e.message.contains("Never"));
    }

    #[test]
    fn task_order_and_evaluator_image() {
        let o = Options::from_settings(&|n| match n {
            "task-order" => Some("sequential".into()),
            "evaluator-image" => Some("mirror.example/klt-evaluate:1".into()),
            _ => None,
        })
        .unwrap();
        assert!(o.sequential);
        assert_eq!(o.evaluator_image(), "mirror.example/klt-evaluate:1");
        assert_eq!(Options::default().evaluator_image(), EVALUATOR_IMAGE);
        let e =
            Options::from_settings(&|n| (n == "task-order").then(|| "serial".into())).unwrap_err();
        assert_eq!(e.name, "task-order");
        assert!(e.message.contains("\"serial\""), "{}", e.message);
    }
}

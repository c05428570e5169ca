//! Render options and the compatibility profiles of the Keptn releases we replace.

use std::fmt;
use std::str::FromStr;

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
    /// Where definitions are looked up when the task's namespace lacks them (Keptn's
    /// operator-namespace fallback).
    pub definition_namespace: Option<String>,
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
            definition_namespace: None,
        }
    }
}

impl Options {
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

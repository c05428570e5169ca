//! Bounds on what one run may read and build. klt-render reads whatever a developer pushes,
//! inside Argo CD's repo server and in every Git hook, so each way input can make it work
//! harder than its size (aliases, nesting, empty documents, huge trees) has a limit that no
//! honest repository reaches. Each limit is a render option (CLI flag, `KLT_*` variable,
//! plugin parameter, KRM field), so a user who does hit one can raise it.

use std::fmt;

/// The limits of one run. Defaults are documented in the README's option table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All input files together, in bytes.
    pub max_input_bytes: u64,
    /// One YAML/JSON document, in bytes. The API server refuses requests over 3 MiB, so no
    /// applicable object is near the default; a `kind: List` counts as one document.
    pub max_document_bytes: u64,
    /// Documents in the whole input (empty ones included: `---` lines cost memory too).
    pub max_documents: u64,
    /// Nesting of collections, counted after aliases are expanded.
    pub max_depth: u32,
    /// Nodes aliases and merge keys may add to one document, per byte of that document.
    pub alias_nodes_per_byte: u64,
    /// Nodes aliases and merge keys may add to the whole input.
    pub max_alias_nodes: u64,
    /// Directory levels below each input directory.
    pub max_dir_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 256 << 20,
            max_document_bytes: 8 << 20,
            max_documents: 1_000_000,
            max_depth: 256,
            alias_nodes_per_byte: 4,
            max_alias_nodes: 1_000_000,
            max_dir_depth: 64,
        }
    }
}

/// The deepest nesting the option accepts: the tree builder and every walk over a tree
/// recurse, and test threads have 2 MiB stacks.
pub const DEPTH_CEILING: u32 = 1024;

/// The deepest directory walk the option accepts (the walk recurses too).
pub const DIR_DEPTH_CEILING: u32 = 4096;

/// Which limit a piece of input exceeded, for a message that says how to raise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    InputBytes,
    DocumentBytes,
    Documents,
    Depth,
    AliasNodesPerByte,
    AliasNodes,
    DirDepth,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::InputBytes,
        Limit::DocumentBytes,
        Limit::Documents,
        Limit::Depth,
        Limit::AliasNodesPerByte,
        Limit::AliasNodes,
        Limit::DirDepth,
    ];

    /// The limit an option name sets, if it names one.
    pub fn from_option(name: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.option() == name)
    }

    /// Sets the limit to `n`, refusing values above what the limit can hold.
    pub fn set(self, limits: &mut Limits, n: u64) -> Result<(), String> {
        let small = |ceiling: u32| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= ceiling)
                .ok_or_else(|| format!("{n} is above the ceiling of {ceiling}"))
        };
        match self {
            Limit::InputBytes => limits.max_input_bytes = n,
            Limit::DocumentBytes => limits.max_document_bytes = n,
            Limit::Documents => limits.max_documents = n,
            Limit::Depth => limits.max_depth = small(DEPTH_CEILING)?,
            Limit::AliasNodesPerByte => limits.alias_nodes_per_byte = n,
            Limit::AliasNodes => limits.max_alias_nodes = n,
            Limit::DirDepth => limits.max_dir_depth = small(DIR_DEPTH_CEILING)?,
        }
        Ok(())
    }

    /// The option that sets it.
    pub fn option(self) -> &'static str {
        match self {
            Limit::InputBytes => "max-input-bytes",
            Limit::DocumentBytes => "max-document-bytes",
            Limit::Documents => "max-documents",
            Limit::Depth => "max-depth",
            Limit::AliasNodesPerByte => "alias-nodes-per-byte",
            Limit::AliasNodes => "max-alias-nodes",
            Limit::DirDepth => "max-dir-depth",
        }
    }

    pub fn value(self, limits: &Limits) -> u64 {
        match self {
            Limit::InputBytes => limits.max_input_bytes,
            Limit::DocumentBytes => limits.max_document_bytes,
            Limit::Documents => limits.max_documents,
            Limit::Depth => limits.max_depth.into(),
            Limit::AliasNodesPerByte => limits.alias_nodes_per_byte,
            Limit::AliasNodes => limits.max_alias_nodes,
            Limit::DirDepth => limits.max_dir_depth.into(),
        }
    }

    /// Help naming every way to raise the limit.
    pub fn help(self, limits: &Limits) -> String {
        let name = self.option();
        let env = format!("KLT_{}", name.to_ascii_uppercase().replace('-', "_"));
        format!(
            "limits keep hostile input from taking down the Argo CD repo server; if an honest manifest needs more, raise the limit ({name} = {}) with --{name}, {env}, or the plugin parameter or KRM field {name}",
            self.value(limits)
        )
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.option())
    }
}

/// Parses a count or a size: digits, optionally with a binary suffix `Ki`, `Mi`, `Gi`
/// (Kubernetes' quantity spelling) or a decimal `k`, `M`, `G`.
pub fn parse_amount(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(split);
    let scale: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{raw:?} is not a number (a size may end in Ki, Mi or Gi)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a number (a size may end in Ki, Mi or Gi)"))?;
    n.checked_mul(scale)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{raw:?} is out of range (at least 1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_with_suffixes() {
        assert_eq!(parse_amount("256Mi"), Ok(256 << 20));
        assert_eq!(parse_amount("8Ki"), Ok(8192));
        assert_eq!(parse_amount("10"), Ok(10));
        assert_eq!(parse_amount("2k"), Ok(2000));
        assert!(parse_amount("0").is_err());
        assert!(parse_amount("1.5Mi").is_err());
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("99999999999999999999").is_err());
        assert!(parse_amount("20000000000Gi").is_err());
    }

    #[test]
    fn help_names_every_setting() {
        let h = Limit::AliasNodes.help(&Limits::default());
        assert!(h.contains("--max-alias-nodes"), "{h}");
        assert!(h.contains("KLT_MAX_ALIAS_NODES"), "{h}");
        assert!(h.contains("max-alias-nodes = 1000000"), "{h}");
    }
}

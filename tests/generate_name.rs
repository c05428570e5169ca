//! Objects named only by `generateName` never stand in for a named one: the output does not
//! depend on which of two such objects was read last (found by the render fuzz target).

use klt_render::{Options, SourceFile, render};

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: path.into(),
        text: text.into(),
    }
}

const DEFINITION: &str = "apiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTaskDefinition\nmetadata:\n  name: notify\nspec:\n  deno:\n    configMapRef:\n      name: code\n";
const TASK: &str = "apiVersion: lifecycle.keptn.sh/v1\nkind: KeptnTask\nmetadata:\n  name: run\nspec:\n  taskDefinition: notify\n  context: {appName: a, appVersion: '1', objectType: App, taskType: pre, workloadName: '', workloadVersion: ''}\n";

fn code_map(code: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: code\ndata:\n  code: {code}\n"
    )
}

#[test]
fn generated_names_are_not_task_inputs_whatever_the_file_order() {
    let (a, b) = (code_map("console.log(1)"), code_map("console.log(2)"));
    let forward = [
        file("a.yaml", &a),
        file("b.yaml", &b),
        file("d.yaml", DEFINITION),
        file("t.yaml", TASK),
    ];
    let backward = [
        file("a.yaml", &b),
        file("b.yaml", &a),
        file("d.yaml", DEFINITION),
        file("t.yaml", TASK),
    ];
    let one = render(&forward, &Options::default());
    let two = render(&backward, &Options::default());
    let job = |o: &klt_render::Output| {
        o.to_yaml()
            .split("---\n")
            .filter(|d| d.contains("kind: Job"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(job(&one), job(&two));
    assert!(
        one.diagnostics.iter().any(|d| d.message.contains("code")),
        "the ConfigMap counts as missing: {:?}",
        one.diagnostics
    );
}

#[test]
fn a_keptn_object_needs_a_name() {
    let def = DEFINITION.replace("  name: notify\nspec", "  generateName: notify\nspec");
    let out = render(&[file("d.yaml", &def)], &Options::default());
    let d = out
        .diagnostics
        .iter()
        .find(|d| d.code == "KLT002")
        .expect("KLT002");
    assert_eq!((d.pos.line, d.pos.col), (4, 3));
    assert!(out.documents.is_empty());
}

// Parse Mermaid files with mermaid's own parser (what GitHub renders with), one line per
// file: "FILE: ok (TYPE)" or "FILE: <parse error>". Exit 1 if any failed.
//   node tests/mermaid/parse.mjs FILE...
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

// mermaid sanitizes labels with DOMPurify, which needs a DOM.
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(readFileSync(file, "utf8"));
    console.log(`${file}: ok (${result.diagramType})`);
  } catch (e) {
    failed++;
    console.log(`${file}: ${e?.message ?? e}`);
  }
}
process.exit(failed ? 1 : 0);

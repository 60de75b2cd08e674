// Validates every manifest under deploy/k8s/ against the published schemas of the versions the
// manifests are written for (deploy/k8s/README.md), as a cluster's API server would before it
// stores them, and fails on any document it cannot check:
//   - Kubernetes 1.33 (apps/v1 Deployment, v1 Service, autoscaling/v2 HorizontalPodAutoscaler,
//     policy/v1 PodDisruptionBudget): kubernetes-models 4.5.1, generated from Kubernetes
//     v1.33.0's OpenAPI document: its JSON-schema validator (ajv, compiled from that document),
//     and TypeScript's check of the same package's types, which rejects fields the types do not
//     have (the OpenAPI document allows any field; `kubectl apply` rejects unknown ones).
//   - KServe 0.20 (serving.kserve.io/v1alpha1 ServingRuntime, v1beta1 InferenceService): ajv
//     against the CRDs' openAPIV3Schema (schemas/kserve.json, made by kserve-extract.mjs), with
//     unknown fields refused wherever the schema lists its fields (the API server's pruning);
//     metadata through the Kubernetes checks above.
//   - repository/deployment-patch.yaml: merged into deployment.yaml the way `kubectl patch`
//     merges it (containers and volumes by name) and checked as that Deployment.
// `--self-test` also checks that a mutated copy of every document is refused.
// Prints one line per document; the last line reads "k8s-schemas: N passed, M failed".
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const HERE = dirname(fileURLToPath(import.meta.url));
const K8S = dirname(HERE);
const ROOT = dirname(dirname(K8S));
const require = createRequire(import.meta.url);

// Kubernetes kinds: apiVersion/kind -> [module, class].
const CORE = {
  "apps/v1/Deployment": ["kubernetes-models/apps/v1/Deployment", "Deployment"],
  "v1/Service": ["kubernetes-models/v1/Service", "Service"],
  "autoscaling/v2/HorizontalPodAutoscaler": ["kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler", "HorizontalPodAutoscaler"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1/PodDisruptionBudget", "PodDisruptionBudget"],
};
const META = ["@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta", "ObjectMeta"];
const PATCHES = { "repository/deployment-patch.yaml": "deployment.yaml" };

const kserve = JSON.parse(readFileSync(join(HERE, "schemas", "kserve.json"), "utf8"));

// Unknown fields refused where a schema lists its fields and does not keep unknown ones.
function strict(s) {
  if (Array.isArray(s)) return s.map(strict);
  if (!s || typeof s !== "object") return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    out[k] = k === "properties" ? Object.fromEntries(Object.entries(v).map(([p, x]) => [p, strict(x)])) : strict(v);
  }
  if (out.properties && out.additionalProperties === undefined && !out["x-kubernetes-preserve-unknown-fields"]) {
    out.additionalProperties = false;
  }
  return out;
}
const ajv = new Ajv({ allErrors: true, strict: false });
ajv.addFormat("int32", { type: "number", validate: (x) => Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31 });
ajv.addFormat("int64", { type: "number", validate: (x) => Number.isSafeInteger(x) });
ajv.addFormat("date-time", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i);
const kserveValidators = {};
for (const [key, schema] of Object.entries(kserve.schemas)) kserveValidators[key] = ajv.compile(strict(schema));

const ajvErrors = (errs) => (errs || []).map((e) => `${e.instancePath || "/"} ${e.message}` +
  (e.params && e.params.additionalProperty ? `: '${e.params.additionalProperty}'` : "") +
  (e.params && e.params.allowedValues ? ` (${e.params.allowedValues.join(", ")})` : ""));

async function modelCheck([mod, cls], data, at) {
  const M = (await import(mod))[cls];
  try {
    new M(structuredClone(data)).validate();
    return [];
  } catch (e) {
    if (!e.errors) throw e;
    return ajvErrors(e.errors).map((m) => at + m.replace(/^\/ /, " "));
  }
}

// TypeScript's excess-property and type checks of each [module, class, data] against the
// package's interface I<class>, in one program.
function typeCheck(items) {
  const name = join(HERE, "__manifests__.ts");
  const lines = [];
  items.forEach(([mod, cls, data], i) => {
    lines.push(`import type { I${cls} as T${i} } from "${mod}";`);
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(data, null, 1)};`);
  });
  const text = lines.join("\n") + "\n";
  const options = { strict: true, noEmit: true, module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16, target: ts.ScriptTarget.ES2022,
    skipLibCheck: true, types: [] };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (f, lang) => f === name ? ts.createSourceFile(f, text, lang) : getSourceFile(f, lang);
  const fileExists = host.fileExists;
  host.fileExists = (f) => f === name || fileExists(f);
  const readFile = host.readFile;
  host.readFile = (f) => f === name ? text : readFile(f);
  const program = ts.createProgram([name], options, host);
  const problems = items.map(() => []);
  const src = program.getSourceFile(name);
  const stmts = src.statements.filter((s) => ts.isVariableStatement(s));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
    const i = d.file === src ? stmts.findIndex((s) => d.start >= s.pos && d.start < s.end) : -1;
    if (i < 0) { problems.forEach((p) => p.push("TypeScript: " + msg)); continue; }
    problems[i].push(`${pathAt(stmts[i], d.start)} TypeScript: ${msg}`);
  }
  return problems;
}

// The JSON path of the node at pos inside a `const m = {...}` statement.
function pathAt(stmt, pos) {
  const path = [];
  let node = stmt.declarationList.declarations[0].initializer;
  for (;;) {
    const kids = ts.isObjectLiteralExpression(node) ? node.properties
      : ts.isArrayLiteralExpression(node) ? node.elements : null;
    if (!kids) break;
    const k = kids.findIndex((c) => pos >= c.pos && pos < c.end);
    if (k < 0) break;
    const c = kids[k];
    if (ts.isPropertyAssignment(c)) {
      path.push(c.name.text);
      if (pos < c.initializer.getStart()) break;
      node = c.initializer;
    } else { path.push(String(k)); node = c; }
  }
  return "/" + path.join("/");
}

// kubectl's strategic merge for what the patches use: maps merge, lists of named objects merge
// by name, other lists and scalars are replaced.
function merge(base, patch) {
  if (Array.isArray(base) && Array.isArray(patch) && patch.every((x) => x && x.name)) {
    const out = base.map((b) => structuredClone(b));
    for (const p of patch) {
      const i = out.findIndex((b) => b.name === p.name);
      if (i < 0) out.push(structuredClone(p)); else out[i] = merge(out[i], p);
    }
    return out;
  }
  if (base && patch && typeof base === "object" && typeof patch === "object" && !Array.isArray(patch)) {
    const out = structuredClone(base);
    for (const [k, v] of Object.entries(patch)) out[k] = k in out ? merge(out[k], v) : structuredClone(v);
    return out;
  }
  return structuredClone(patch);
}

function yamlFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === "validate" ? [] : yamlFiles(join(dir, e.name)))
      : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []);
}

function documents(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  return docs.map((d, i) => {
    if (d.errors.length) throw new Error(`${file}: YAML: ${d.errors[0].message}`);
    return { doc: d.toJS(), index: i };
  }).filter((d) => d.doc !== null);
}

// Every document to check: {where, doc}. A patch becomes the Deployment it makes.
function collect() {
  const out = [];
  for (const f of yamlFiles(K8S).sort()) {
    const rel = relative(K8S, f);
    for (const { doc, index } of documents(f)) {
      const where = `deploy/k8s/${rel}` + (index ? ` (document ${index + 1})` : "");
      if (PATCHES[rel]) {
        const base = documents(join(K8S, PATCHES[rel]))[0].doc;
        out.push({ where: `${where} merged into deploy/k8s/${PATCHES[rel]}`, doc: merge(base, doc) });
      } else {
        out.push({ where, doc });
      }
    }
  }
  return out;
}

// Problems of each document (a list of strings per document; empty = valid).
async function check(items) {
  const typed = [];
  const results = [];
  for (const { doc } of items) {
    const key = doc && `${doc.apiVersion}/${doc.kind}`;
    const p = [];
    if (!doc || typeof doc !== "object" || !doc.apiVersion || !doc.kind) {
      p.push("no apiVersion and kind: not a manifest this validator knows");
    } else if (CORE[key]) {
      p.push(...await modelCheck(CORE[key], doc, ""));
      typed.push([results.length, [...CORE[key], doc]]);
    } else if (kserveValidators[key]) {
      const v = kserveValidators[key];
      if (!v(doc)) p.push(...ajvErrors(v.errors));
      if (doc.metadata !== undefined) {
        p.push(...await modelCheck(META, doc.metadata, "/metadata"));
        typed.push([results.length, [...META, doc.metadata], "/metadata"]);
      }
    } else {
      p.push(`${key}: no schema for this apiVersion and kind (known: ${[...Object.keys(CORE), ...Object.keys(kserveValidators)].join(", ")})`);
    }
    results.push(p);
  }
  const tsProblems = typeCheck(typed.map(([, t]) => t));
  typed.forEach(([i, , prefix], k) => results[i].push(...tsProblems[k].map((m) => (prefix || "") + m)));
  return results;
}

// Mutations that each must be refused: the typo'd field, the wrong type, the bad enum value.
function mutants(doc) {
  const m = [];
  const mut = (what, f) => { const d = structuredClone(doc); if (f(d) !== false) m.push([what, d]); };
  const pod = (d) => d.kind === "Deployment" ? d.spec.template.spec : d.kind === "ServingRuntime" ? d.spec : null;
  mut("an unknown top-level field", (d) => { d.sepc = d.spec; });
  mut("metadata.name a number", (d) => { d.metadata.name = 7; });
  mut("an unknown metadata field", (d) => { d.metadata.lables = { app: "cigtd" }; });
  if (pod(doc)) {
    mut("livenessProbe misspelt", (d) => { const c = pod(d).containers[0]; c.livenesProbe = c.livenessProbe; delete c.livenessProbe; });
    mut("the readiness probe's port an object", (d) => { pod(d).containers[0].readinessProbe.httpGet.port = { http: 1 }; });
    mut("a container without a name", (d) => { delete pod(d).containers[0].name; });
  }
  if (doc.kind === "Deployment") mut("replicas a string", (d) => { d.spec.replicas = "two"; });
  if (doc.kind === "Deployment") mut("strategy type not an enum value", (d) => { d.spec.strategy.type = "Rolling"; });
  if (doc.kind === "Service") mut("ports[0].port a string", (d) => { d.spec.ports[0].port = "80"; });
  if (doc.kind === "HorizontalPodAutoscaler") mut("minReplicas a string", (d) => { d.spec.minReplicas = "2"; });
  if (doc.kind === "PodDisruptionBudget") mut("an unknown spec field", (d) => { d.spec.minAvailabel = 1; });
  if (doc.kind === "InferenceService") {
    mut("predictor.model.storageUri a list", (d) => { d.spec.predictor.model.storageUri = ["pvc://x"]; });
    mut("an unknown predictor field", (d) => { d.spec.predictor.modle = d.spec.predictor.model; delete d.spec.predictor.model; });
  }
  if (doc.kind === "ServingRuntime") mut("supportedModelFormats[0].autoSelect a string", (d) => { d.spec.supportedModelFormats[0].autoSelect = "yes"; });
  return m;
}

const selfTest = process.argv.includes("--self-test");
let pass = 0, fail = 0;
const ok = (m) => { console.log("ok:   " + m); pass++; };
const bad = (m, problems) => { console.log("FAIL: " + m); for (const p of problems) console.log("        " + p); fail++; };

const items = collect();
const versions = `kubernetes-models ${require("kubernetes-models/package.json").version} (Kubernetes 1.33), ` +
  `KServe ${kserve.source.release} CRDs, ajv ${require("ajv/package.json").version}, TypeScript ${ts.version}`;
console.log(`schemas: ${versions}`);
const found = await check(items);
items.forEach(({ where, doc }, i) => {
  const what = `${where}: ${doc && doc.apiVersion} ${doc && doc.kind} ${doc && doc.metadata && doc.metadata.name}`;
  if (found[i].length) bad(what, found[i]); else ok(what + " is valid");
});
if (selfTest) {
  const cases = items.flatMap(({ where, doc }) => mutants(doc).map(([what, d]) => ({ where: `${where} with ${what}`, doc: d })));
  const got = await check(cases);
  cases.forEach(({ where }, i) => {
    if (got[i].length) ok(`refused: ${where} (${got[i][0]}${got[i].length > 1 ? `, +${got[i].length - 1}` : ""})`);
    else bad(`not refused: ${where}`, []);
  });
}
console.log(`k8s-schemas: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);

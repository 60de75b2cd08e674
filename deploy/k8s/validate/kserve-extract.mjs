// Rewrites schemas/kserve.json from KServe's CustomResourceDefinitions: for each served version
// of the CRDs named on the command line, its openAPIV3Schema as published (descriptions
// dropped: they do not validate anything), keyed "group/version/Kind". Run from a KServe
// checkout at a release tag:
//   node kserve-extract.mjs v0.20.0 1fb78105... KSERVE/config/crd/full/serving.kserve.io_{servingruntimes,inferenceservices}.yaml
import { readFileSync, writeFileSync } from "node:fs";
import { parse } from "yaml";

const [release, commit, ...files] = process.argv.slice(2);
if (!files.length) {
  console.error("usage: node kserve-extract.mjs RELEASE COMMIT CRD.yaml...");
  process.exit(2);
}
const strip = (n) => {
  if (Array.isArray(n)) return n.map(strip);
  if (!n || typeof n !== "object") return n;
  const out = {};
  for (const [k, v] of Object.entries(n)) {
    if (k === "description" && typeof v === "string") continue;
    out[k] = k === "properties" ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, strip(s)])) : strip(v);
  }
  return out;
};
const out = {
  source: {
    project: "KServe (Apache-2.0)",
    release,
    commit,
    files: files.map((f) => f.slice(f.indexOf("config/"))),
  },
  schemas: {},
};
for (const f of files) {
  const crd = parse(readFileSync(f, "utf8"));
  for (const v of crd.spec.versions.filter((v) => v.served)) {
    out.schemas[`${crd.spec.group}/${v.name}/${crd.spec.names.kind}`] = strip(v.schema.openAPIV3Schema);
  }
}
writeFileSync(new URL("schemas/kserve.json", import.meta.url), JSON.stringify(out) + "\n");
console.log(Object.keys(out.schemas).join("\n"));

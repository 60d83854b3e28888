#!/usr/bin/env node
// Offline schema validation of rendered Kubernetes objects (run by deploy/validate.sh).
//
// usage: node k8s-schema.js [--write-ts DIR] CASE...
//   CASE = NAME:EXPECT:FILE.json   FILE holds a JSON array of objects (one kustomize render)
//   EXPECT  ok           every object must pass both checks
//           models       a negative case: kubernetes-models must reject it
//           types        a negative case: the TypeScript check must reject it
//           models+types a negative case: both must reject it
//   --write-ts DIR  also write the generated TypeScript (one NAME.ts per case) to DIR
//
// Two independent checks of every object:
//   kubernetes-models  the JSON schemas of the Kubernetes OpenAPI spec, compiled to ajv
//                      validators: value types, required fields, enums (imagePullPolicy,
//                      protocol, whenUnsatisfiable, ...), int-or-string, quantities.
//                      These schemas allow unknown fields.
//   kubernetes-types   each object becomes an object literal assigned to a constant of its
//   + typescript       kubernetes-types interface; `tsc --noEmit --strict` (run in-process
//                      through the compiler API, all cases in one program) rejects unknown or
//                      misspelled fields (excess-property check), wrong value types and missing
//                      required fields. Enums are plain `string` there.
// Every object's apiVersion/kind must be known to both packages.
// Prints one FAIL line per problem; exits 1 if any, 0 otherwise.
"use strict";
const fs = require("fs");
const path = require("path");
const ts = require("typescript");

const here = __dirname;
const EXPECTS = new Set(["ok", "models", "types", "models+types"]);

function usage(msg) {
	console.error(`k8s-schema: ${msg}\nusage: node k8s-schema.js [--write-ts DIR] NAME:EXPECT:FILE.json...`);
	process.exit(2);
}

let writeTs = null;
const cases = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === "--write-ts") {
		writeTs = argv[++i] || usage("--write-ts needs a directory");
		continue;
	}
	const m = /^([A-Za-z0-9_.-]+):([a-z+]+):(.+)$/.exec(argv[i]);
	if (!m || !EXPECTS.has(m[2])) usage(`bad case ${JSON.stringify(argv[i])}`);
	let objs;
	try {
		objs = JSON.parse(fs.readFileSync(m[3], "utf8"));
	} catch (e) {
		usage(`${m[3]}: ${e.message}`);
	}
	if (!Array.isArray(objs)) usage(`${m[3]}: not a JSON array of objects`);
	cases.push({ name: m[1], expect: m[2], objs, models: [], types: [], other: [] });
}
if (!cases.length) usage("no cases");

const ident = (o) => `${(o && o.kind) || "?"}/${(o && o.metadata && o.metadata.name) || "?"}`;

// apiVersion "v1" -> core, "apps/v1" -> apps, "networking.k8s.io/v1" -> networking
function split(apiVersion) {
	const parts = String(apiVersion).split("/");
	return parts.length === 1 ? { group: "", version: parts[0] } : { group: parts[0], version: parts[1] };
}

// ---- kubernetes-models ------------------------------------------------------------------
function modelClass(o) {
	const { group, version } = split(o.apiVersion);
	const mod = group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
	let m;
	try {
		m = require(mod);
	} catch (e) {
		return null;
	}
	const C = m[o.kind];
	return typeof C === "function" ? C : null;
}

for (const c of cases) {
	c.objs.forEach((o, i) => {
		if (!o || typeof o !== "object" || Array.isArray(o)) {
			c.other.push(`object ${i} is not a mapping`);
			return;
		}
		if (typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
			c.other.push(`object ${i} (${ident(o)}) has no apiVersion/kind`);
			return;
		}
		const C = modelClass(o);
		if (!C) {
			c.models.push(`${ident(o)}: no kubernetes-models schema for ${o.apiVersion} ${o.kind}`);
			return;
		}
		try {
			new C(JSON.parse(JSON.stringify(o))).validate();
		} catch (e) {
			const errs = Array.isArray(e.errors) && e.errors.length ? e.errors : [{ instancePath: "", message: e.message }];
			for (const er of errs) {
				let extra = "";
				if (er.params && er.params.allowedValues) extra = ` (${er.params.allowedValues.join(", ")})`;
				c.models.push(`${ident(o)}: ${er.instancePath || "/"} ${er.message}${extra}`);
			}
		}
	});
}

// ---- kubernetes-types + TypeScript ----------------------------------------------------------
function typesModule(o) {
	const { group, version } = split(o.apiVersion);
	const g = group ? group.split(".")[0] : "core";
	const rel = `${g}/${version}`;
	const dts = path.join(here, "node_modules", "kubernetes-types", `${rel}.d.ts`);
	if (!fs.existsSync(dts)) return null;
	const src = fs.readFileSync(dts, "utf8");
	if (!new RegExp(`export interface ${o.kind} \\{`).test(src)) return null;
	return `kubernetes-types/${rel}`;
}

const files = new Map(); // virtual file name -> { text, c, spans: [{from, to, id}] }
for (const c of cases) {
	const imports = new Map(); // module -> Set(kind)
	const body = [];
	const spans = [];
	let line = 0;
	const header = [];
	c.objs.forEach((o, i) => {
		if (!o || typeof o !== "object" || typeof o.kind !== "string") return;
		const mod = typesModule(o);
		if (!mod) {
			c.types.push(`${ident(o)}: no kubernetes-types interface for ${o.apiVersion} ${o.kind}`);
			return;
		}
		if (!imports.has(mod)) imports.set(mod, new Set());
		imports.get(mod).add(o.kind);
		const alias = `${mod.replace(/[^A-Za-z0-9]/g, "_")}_${o.kind}`;
		const lit = JSON.stringify(o, null, 2).split("\n");
		spans.push({ from: line, to: line + lit.length, id: ident(o) });
		body.push(`export const object${i}: ${alias} = ${lit[0]}`, ...lit.slice(1, -1), `${lit[lit.length - 1]};`);
		line += lit.length;
	});
	for (const [mod, kinds] of imports) {
		const alias = mod.replace(/[^A-Za-z0-9]/g, "_");
		header.push(`import type { ${[...kinds].map((k) => `${k} as ${alias}_${k}`).join(", ")} } from "${mod}";`);
	}
	header.push("export {};");
	const text = `// ${c.name}: generated by deploy/schema/k8s-schema.js\n${header.join("\n")}\n${body.join("\n")}\n`;
	const offset = 2 + header.length; // lines before the first object
	spans.forEach((s) => ((s.from += offset), (s.to += offset)));
	// Virtual files next to node_modules/ so "kubernetes-types/..." resolves from there.
	const fname = path.join(here, ".cases", `${c.name}.ts`);
	files.set(fname, { text, c, spans });
	if (writeTs) {
		fs.mkdirSync(writeTs, { recursive: true });
		fs.writeFileSync(path.join(writeTs, `${c.name}.ts`), text);
	}
}

// Same as `tsc --noEmit --strict` on those files (tsconfig.json in this directory).
const options = {
	strict: true,
	noEmit: true,
	exactOptionalPropertyTypes: true,
	skipLibCheck: true,
	types: [],
	lib: ["lib.es2020.d.ts"],
	target: ts.ScriptTarget.ES2020,
	module: ts.ModuleKind.CommonJS,
	moduleResolution: ts.ModuleResolutionKind.Node10,
};
const host = ts.createCompilerHost(options, true);
const getSourceFile = host.getSourceFile.bind(host);
host.getSourceFile = (f, lang, onErr, create) =>
	files.has(f) ? ts.createSourceFile(f, files.get(f).text, lang, true) : getSourceFile(f, lang, onErr, create);
const fileExists = host.fileExists.bind(host);
host.fileExists = (f) => files.has(f) || fileExists(f);
const readFile = host.readFile.bind(host);
host.readFile = (f) => (files.has(f) ? files.get(f).text : readFile(f));
// "/spec/template/spec/containers/0" of the literal property or element at pos
function jsonPath(sf, pos) {
	let node = sf;
	for (;;) {
		const next = node.getChildren(sf).find((ch) => ch.getStart(sf) <= pos && pos < ch.getEnd());
		if (!next) break;
		node = next;
	}
	const parts = [];
	for (let n = node; n && n !== sf; n = n.parent) {
		if (ts.isPropertyAssignment(n)) parts.unshift(n.name.text !== undefined ? n.name.text : n.name.getText(sf));
		else if (n.parent && ts.isArrayLiteralExpression(n.parent)) parts.unshift(String(n.parent.elements.indexOf(n)));
		if (ts.isVariableDeclaration(n)) break;
	}
	return "/" + parts.join("/");
}

const program = ts.createProgram([...files.keys()], options, host);
const diags = ts.getPreEmitDiagnostics(program);
for (const d of diags) {
	const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
	const f = d.file && files.get(d.file.fileName);
	if (!f) {
		// a problem outside the generated files (typescript / kubernetes-types install)
		for (const c of cases) c.other.push(`TypeScript: ${msg}`);
		continue;
	}
	const { line } = d.file.getLineAndCharacterOfPosition(d.start || 0);
	const span = f.spans.find((s) => line >= s.from && line < s.to);
	f.c.types.push(`${span ? span.id : "?"}: ${jsonPath(d.file, d.start || 0)}: ${msg} (${f.c.name}.ts:${line + 1})`);
}

// ---- report ---------------------------------------------------------------------------
let fail = 0;
const FAIL = (s) => {
	console.log(`FAIL ${s}`);
	fail = 1;
};
for (const c of cases) {
	for (const e of c.other) FAIL(`[schema ${c.name}] ${e}`);
	if (c.expect === "ok") {
		for (const e of c.models) FAIL(`[schema ${c.name}] kubernetes-models: ${e}`);
		for (const e of c.types) FAIL(`[schema ${c.name}] kubernetes-types: ${e}`);
		if (!c.objs.length) FAIL(`[schema ${c.name}] no objects`);
		if (!c.models.length && !c.types.length && !c.other.length)
			console.log(`schema ${c.name}: ${c.objs.length} objects valid (kubernetes-models, kubernetes-types + tsc)`);
		continue;
	}
	const want = c.expect.split("+");
	const got = [];
	for (const w of want) {
		const errs = w === "models" ? c.models : c.types;
		const tool = w === "models" ? "kubernetes-models" : "kubernetes-types + tsc";
		const first = errs.length && errs[0].length > 200 ? `${errs[0].slice(0, 197)}...` : errs[0];
		if (errs.length) got.push(`${tool}: ${first}${errs.length > 1 ? ` (+${errs.length - 1} more)` : ""}`);
		else FAIL(`negative test ${c.name}: ${tool} accepted a broken manifest`);
	}
	if (got.length === want.length) console.log(`schema ${c.name}: rejected as expected by ${got.join("; ")}`);
}
process.exit(fail);

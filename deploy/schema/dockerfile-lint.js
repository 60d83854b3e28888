#!/usr/bin/env node
// Lints Dockerfiles with dockerfile-utils (the validator of the Dockerfile language server):
// unknown instructions, missing or extra arguments, bad ports/flags/durations, FROM problems,
// invalid escape/syntax directives, ...  Prints every error and warning as FILE:LINE:COL;
// exits 1 if any error, 0 otherwise (warnings are reported, not fatal).
//
// usage: node dockerfile-lint.js [--expect-errors] DOCKERFILE...
//   --expect-errors  a negative test: exit 0 only if every file has at least one error
"use strict";
const fs = require("fs");
const du = require("dockerfile-utils");

const S = du.ValidationSeverity;
// Stricter than the defaults: these are real bugs, not style.
const settings = {
	deprecatedMaintainer: S.WARNING,
	directiveCasing: S.WARNING,
	emptyContinuationLine: S.WARNING,
	instructionCasing: S.WARNING,
	instructionCmdMultiple: S.ERROR, // only the last CMD counts
	instructionEntrypointMultiple: S.ERROR, // only the last ENTRYPOINT counts
	instructionHealthcheckMultiple: S.ERROR,
	instructionJSONInSingleQuotes: S.ERROR, // ['a'] is not JSON: runs as a shell string
	instructionWorkdirRelative: S.ERROR,
};
const ERROR = 1; // LSP DiagnosticSeverity of the returned diagnostics
const WARNING = 2;

let expectErrors = false;
const paths = [];
for (const a of process.argv.slice(2)) {
	if (a === "--expect-errors") expectErrors = true;
	else paths.push(a);
}
if (!paths.length) {
	console.error("usage: node dockerfile-lint.js [--expect-errors] DOCKERFILE...");
	process.exit(2);
}

let fail = 0;
for (const p of paths) {
	const diags = du.validate(fs.readFileSync(p, "utf8"), settings);
	let errors = 0;
	let warnings = 0;
	for (const d of diags) {
		const sev = d.severity === ERROR ? "error" : d.severity === WARNING ? "warning" : "info";
		if (d.severity === ERROR) errors++;
		if (d.severity === WARNING) warnings++;
		const where = `${p}:${d.range.start.line + 1}:${d.range.start.character + 1}`;
		const text = `${where}: ${sev}: ${d.message} [dockerfile-utils ${d.code}]`;
		if (!expectErrors) console.log(`${d.severity === ERROR ? "FAIL " : ""}${text}`);
		else if (d.severity === ERROR && errors === 1) console.log(`dockerfile-utils: rejected as expected: ${text}`);
	}
	if (expectErrors) {
		if (!errors) {
			console.log(`FAIL negative test ${p}: dockerfile-utils found no error in a broken Dockerfile`);
			fail = 1;
		}
	} else {
		if (errors) fail = 1;
		console.log(`dockerfile-utils: ${p}: ${errors} errors, ${warnings} warnings`);
	}
}
process.exit(fail);

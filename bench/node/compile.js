// Compile MJML files with the official compiler, in process, N times each; print JSON timings.
// Usage: node compile.js N file.mjml [file.mjml ...]
const fs = require("fs");
const mjml = require("mjml");
const rounds = Number(process.argv[2]);
const results = {};
for (const file of process.argv.slice(3)) {
  const source = fs.readFileSync(file, "utf8");
  mjml(source, { validationLevel: "skip" }); // warm up
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) mjml(source, { validationLevel: "skip" });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
  const validation = mjml(source, { validationLevel: "soft" }).errors.map((e) => e.formattedMessage);
  results[file] = { ms_per_render: elapsed / rounds, errors: validation };
}
console.log(JSON.stringify(results));

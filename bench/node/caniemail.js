// Check HTML files against the caniemail data (@jsx-email/doiuse-email) for the clients buzz
// cares about; print JSON {file: {errors: [...], warnings: [...]}}. Usage: node caniemail.js a.html …
// The package's own client list lacks Outlook.com although its data has it: added by hand.
const fs = require("fs");
const { DoIUseEmail } = require("@jsx-email/doiuse-email");

const CLIENTS = [
  "gmail.*", "outlook.windows", "outlook.macos", "outlook.ios",
  "outlook.android", "apple-mail.*", "yahoo.*", "samsung-email.android",
];
const results = {};
for (const file of process.argv.slice(2)) {
  const checker = new DoIUseEmail({ emailClients: CLIENTS });
  checker.emailClients.push("outlook.outlook-com");
  const result = checker.check(fs.readFileSync(file, "utf8"));
  results[file] = { errors: result.errors ?? [], warnings: result.warnings };
}
console.log(JSON.stringify(results, null, 1));

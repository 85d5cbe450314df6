// Copies Aladin Lite (npm package aladin-lite, installed by `npm ci` from package-lock.json) into the
// Python package's static files, so that the viewer page loads nothing from elsewhere at run time.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules", "aladin-lite");
const target = join(here, "..", "src", "romanflow", "services", "static", "vendor");
mkdirSync(target, { recursive: true });
const pkg = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
copyFileSync(join(source, "dist", "aladin.js"), join(target, "aladin.js"));
for (const name of ["LICENSE", "COPYING", "COPYING.LESSER"]) {
  try { copyFileSync(join(source, name), join(target, `aladin-lite-${name}`)); } catch { /* absent in a release */ }
}
writeFileSync(join(target, "VERSION"), `aladin-lite ${pkg.version}\n`);
console.log(`aladin-lite ${pkg.version} -> ${target}`);

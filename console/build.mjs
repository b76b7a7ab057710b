// Builds the console into core/nabat/console/static: one script, one stylesheet, the page.
// Everything comes from npm packages pinned in package-lock.json; nothing is fetched at run
// time (ЕДДС networks reach no internet). The output is deterministic, so CI can rebuild it and
// check that what is committed is what the sources give.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const out = "../core/nabat/console/static";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ["src/main.jsx"],
  bundle: true,
  minify: true,
  format: "esm",
  splitting: true, // the map and the reports (Leaflet, uPlot) load when first opened
  chunkNames: "chunk-[hash]",
  entryNames: "app",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: out,
  legalComments: "eof",
  logLevel: "warning",
});

const css = [
  "node_modules/leaflet/dist/leaflet.css",
  "node_modules/uplot/dist/uPlot.min.css",
  "src/app.css",
].map((path) => `/* ${path.replace("node_modules/", "")} */\n${readFileSync(path, "utf8")}`);
writeFileSync(`${out}/app.css`, css.join("\n"));
copyFileSync("src/index.html", `${out}/index.html`);
writeFileSync(
  `${out}/LICENSES.txt`,
  ["preact", "leaflet", "uplot"]
    .map((name) => `== ${name} ==\n${readFileSync(`node_modules/${name}/LICENSE`, "utf8")}`)
    .join("\n"),
);

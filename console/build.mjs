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
writeFileSync(`${out}/favicon.ico`, favicon());
writeFileSync(
  `${out}/LICENSES.txt`,
  ["preact", "leaflet", "uplot"]
    .map((name) => `== ${name} ==\n${readFileSync(`node_modules/${name}/LICENSE`, "utf8")}`)
    .join("\n"),
);

// The tab's icon, drawn here so the build needs no image tool and gives the same bytes every
// time: a white bell on the console's red, 32×32, as an ICO holding one 32-bit bitmap.
function favicon() {
  const size = 32;
  const pixels = Buffer.alloc(size * size * 4);
  const inBell = (x, y) => {
    const dx = Math.abs(x - 15.5);
    if ((x - 15.5) ** 2 + (y - 6.5) ** 2 <= 4) return true; // the crown
    if (y >= 8 && y < 22) return dx <= 4 + (y - 8) * 0.45; // the body, widening
    if (y >= 22 && y < 24) return dx <= 11; // the rim
    return (x - 15.5) ** 2 + (y - 26) ** 2 <= 5; // the clapper
  };
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const corner = Math.max(0, Math.abs(x - 15.5) - 11.5) ** 2 + Math.max(0, Math.abs(y - 15.5) - 11.5) ** 2;
      const inside = corner <= 16; // a square with rounded corners
      const [r, g, b, a] = !inside ? [0, 0, 0, 0] : inBell(x, y) ? [255, 255, 255, 255] : [0xe5, 0x38, 0x3b, 255];
      const at = ((size - 1 - y) * size + x) * 4; // bottom-up rows, BGRA
      pixels.set([b, g, r, a], at);
    }
  }
  const mask = Buffer.alloc(size * 4); // 1 bit per pixel, rows of 4 bytes: alpha decides
  const header = Buffer.alloc(6 + 16 + 40);
  const image = 40 + pixels.length + mask.length;
  header.writeUInt16LE(0, 0);
  header.writeUInt16LE(1, 2); // an icon
  header.writeUInt16LE(1, 4); // one image
  header.writeUInt8(size, 6);
  header.writeUInt8(size, 7);
  header.writeUInt16LE(1, 10); // planes
  header.writeUInt16LE(32, 12); // bits per pixel
  header.writeUInt32LE(image, 14);
  header.writeUInt32LE(22, 18); // where the image starts
  header.writeUInt32LE(40, 22); // BITMAPINFOHEADER
  header.writeInt32LE(size, 26);
  header.writeInt32LE(size * 2, 30); // colour and mask, one above the other
  header.writeUInt16LE(1, 34);
  header.writeUInt16LE(32, 36);
  header.writeUInt32LE(pixels.length + mask.length, 42);
  return Buffer.concat([header, pixels, mask]);
}

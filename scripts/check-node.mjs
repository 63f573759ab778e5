// Plain JavaScript so that even an old Node can run it and say what is wrong.
const major = Number(process.versions.node.split(".")[0]);
if (major !== 24) {
  console.error(
    `Nightshift needs Node.js 24 but this is ${process.version} (${process.execPath}).\n` +
      "Run 'npm ci' (it installs Node 24 into node_modules/.bin from the npm registry's 'node' package)\n" +
      "and use the Makefile targets or 'npm run', which put node_modules/.bin first on PATH.",
  );
  process.exit(1);
}

// Turns a TF.js model that an npm package ships as JavaScript bundles (nsfwjs: model.min.js
// exports the model.json object, each group1-shardNofM.min.js a base64 string) into the standard
// TF.js layers-model files that tensorflowjs_converter writes and `finch import` reads:
// OUT/model.json and OUT/<shard> binaries.
// The bundles are evaluated in an empty V8 context (no require, no process, no file system).
//
// usage: node scripts/unwrap_tfjs_bundle.js BUNDLE_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');

function evaluate(file) {
  const module = {exports: {}};
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), {module, exports: module.exports},
                     {filename: file, timeout: 60000});
  return module.exports;
}

const [bundleDir, outDir] = process.argv.slice(2);
if (!bundleDir || !outDir) {
  console.error('usage: node unwrap_tfjs_bundle.js BUNDLE_DIR OUT_DIR');
  process.exit(2);
}
const model = evaluate(path.join(bundleDir, 'model.min.js'));
if (!model || typeof model !== 'object' || !Array.isArray(model.weightsManifest))
  throw new Error(`${bundleDir}/model.min.js does not export a TF.js model.json object`);
fs.mkdirSync(outDir, {recursive: true});
for (const group of model.weightsManifest) {
  for (const shard of group.paths) {
    if (shard.includes('/') || shard.includes('..')) throw new Error(`odd shard path ${shard}`);
    const base64 = evaluate(path.join(bundleDir, shard + '.min.js'));
    if (typeof base64 !== 'string') throw new Error(`${shard}.min.js does not export a string`);
    fs.writeFileSync(path.join(outDir, shard), Buffer.from(base64, 'base64'));
  }
}
fs.writeFileSync(path.join(outDir, 'model.json'), JSON.stringify(model));

// Runs a TF.js layers model (model.json + binary shards) in TensorFlow.js itself
// (@tensorflow/tfjs-layers on the pure-JavaScript CPU backend, installed by
// scripts/install-npm.sh) on raw RGB images, scaled as nsfwjs does (x / 255), and prints JSON:
// {"probs": [[...]] (the model's outputs), "features": [[...]] (the input of its first Dense
// layer: the pooled backbone features)} as the last line of stdout (TF.js prints a banner first).
//
// usage: NODE_PATH=<npm prefix>/node_modules node tfjs_reference.js MODEL_DIR SIZE IMAGE.rgb...
//   IMAGE.rgb: SIZE x SIZE x 3 bytes, rows top to bottom, RGB.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfl = require('@tensorflow/tfjs-layers');

async function main() {
  const [dir, sizeArg, ...images] = process.argv.slice(2);
  const size = Number(sizeArg);
  await tf.setBackend('cpu');
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const specs = json.weightsManifest.flatMap((g) => g.weights);
  const data = Buffer.concat(json.weightsManifest.flatMap(
      (g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p)))));
  const model = await tfl.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length)}));
  const firstDense = model.layers.find((l) => l.getClassName() === 'Dense');
  const both = tfl.model({inputs: model.inputs, outputs: [model.outputs[0], firstDense.input]});
  const result = {probs: [], features: []};
  for (const file of images) {
    const bytes = fs.readFileSync(file);
    if (bytes.length !== size * size * 3) throw new Error(`${file}: not ${size}x${size}x3 bytes`);
    const x = tf.div(tf.tensor(Float32Array.from(bytes), [1, size, size, 3]), 255);
    const [probs, features] = both.predict(x);
    result.probs.push(Array.from(probs.dataSync()));
    result.features.push(Array.from(features.dataSync()));
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { process.stderr.write(String(e.stack || e) + '\n'); process.exit(1); });

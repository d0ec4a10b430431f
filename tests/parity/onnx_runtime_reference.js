// Runs an ONNX file in ONNX Runtime (the onnxruntime-node npm package, whose CPU library
// ships inside the package) on a raw float32 batch and prints its outputs as JSON.
//
// usage: NODE_PATH=<npm prefix>/node_modules node onnx_runtime_reference.js MODEL.onnx
//            INPUT.f32 B C H W
// Prints {"logits": [[...]], "embedding": [[...]], "input_names": [...], "output_names": [...]}.
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, ...dims] = process.argv.slice(2);
  const shape = dims.map(Number);
  const bytes = fs.readFileSync(input);
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1, graphOptimizationLevel: 'all'});
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, shape)};
  const out = await session.run(feeds);
  const rows = (t) => {
    const [b, d] = t.dims;
    return Array.from({length: b}, (_, i) => Array.from(t.data.slice(i * d, (i + 1) * d)));
  };
  const result = {input_names: session.inputNames, output_names: session.outputNames};
  for (const name of session.outputNames) result[name] = rows(out[name]);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { process.stderr.write(String(e.stack || e) + '\n'); process.exit(1); });
